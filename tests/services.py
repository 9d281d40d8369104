"""Where the tests find RabbitMQ and PostgreSQL.

In order: ``ORDERBUS_TEST_AMQP_URL`` / ``ORDERBUS_TEST_DATABASE_URL``; else a
testcontainers container when a Docker engine answers; else the local
services on 127.0.0.1. When none answers the test is skipped, unless
``ORDERBUS_REQUIRE_SERVICES=1`` (as in CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import pytest

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672//"
LOCAL_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def services_required() -> bool:
    return os.environ.get("ORDERBUS_REQUIRE_SERVICES", "") not in ("", "0", "false")


def unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if services_required():
        pytest.fail(f"{message} and ORDERBUS_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(message)


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def amqp_server() -> Iterator[str]:
    url = os.environ.get("ORDERBUS_TEST_AMQP_URL")
    if url:
        yield url
        return
    if docker_engine_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as rabbit:
            host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
            yield f"amqp://guest:guest@{host}:{port}//"
        return
    yield LOCAL_AMQP


@contextmanager
def database_server() -> Iterator[str]:
    url = os.environ.get("ORDERBUS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="psycopg") as pg:
            yield pg.get_connection_url()
        return
    yield LOCAL_DATABASE


def rabbitmqctl(*args: str) -> bool:
    if not shutil.which("rabbitmqctl"):
        return False
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    return result.returncode == 0


@contextmanager
def private_vhost(base_url: str) -> Iterator[str]:
    """A vhost of its own for this test run, when rabbitmqctl can make one."""
    parts = urlsplit(base_url)
    local = parts.hostname in ("127.0.0.1", "localhost")
    name = f"orderbus-test-{uuid.uuid4().hex[:8]}"
    user = parts.username or "guest"
    if local and rabbitmqctl("add_vhost", name):
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        try:
            yield parts._replace(path="/" + quote(name, safe="")).geturl()
        finally:
            rabbitmqctl("delete_vhost", name)
    else:
        yield base_url  # isolation comes from per-test queue names


@contextmanager
def private_schema(base_url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own, migrated, dropped afterwards."""
    from bench.pipeline import private_schema as scratch_schema

    with scratch_schema(base_url, prefix="t") as url:
        yield url


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def end_sessions_named(engine: object, name: str) -> int:
    """End the PostgreSQL sessions whose ``application_name`` is ``name``, as
    a restarted database or a proxy would; how many there were."""
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    with engine.begin() as conn:
        ended = conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": name},
        )
    return int(ended or 0)
