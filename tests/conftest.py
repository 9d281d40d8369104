from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from infra.database import make_engine, upgrade
from tests import services


@pytest.fixture(scope="session")
def amqp_base_url() -> Iterator[str]:
    with services.amqp_server() as base:
        if not services.reachable(base, 5672):
            services.unavailable(f"RabbitMQ at {base}")
        yield base


@pytest.fixture(scope="session")
def amqp_url(amqp_base_url: str) -> Iterator[str]:
    """A vhost of the test run's own (the e2e tests take one each: e2e/conftest.py)."""
    with services.private_vhost(amqp_base_url) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    with services.database_server() as base:
        if not services.reachable(base, 5432):
            services.unavailable(f"PostgreSQL at {base}")
        yield base


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    with services.private_schema(postgres_base_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/orderbus.db"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same tests on every storage backend orderbus supports."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def namespace() -> str:
    return services.namespace()
