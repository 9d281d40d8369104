"""What a newcomer meets first on the command line (issue 20): the version,
what each component does, where each listening component is, and a start
that is not a page of migration lines."""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest

from infra.database import upgrade
from infra.logs import configure
from infra.settings import Settings
from orderbus import cli
from orderbus.bootstrap import bootstrap
from orderbus.runner import COMPONENTS, Daemon


def test_the_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"orderbus {version('orderbus')}"


def test_run_help_says_what_each_component_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    lines = capsys.readouterr().out.splitlines()
    described = {
        line.split()[0] for line in lines if line.startswith("  ") and len(line.split()) > 3
    }
    assert set(COMPONENTS) <= described


def test_each_listening_component_is_told_with_its_url(sqlite_url: str) -> None:
    settings = Settings(
        broker_url="memory://", database_url=sqlite_url, ingest_port=18080, admin_port=18081
    )
    daemon = Daemon(bootstrap(settings), ("ingest", "admin"))
    daemon.build()
    assert daemon.listening == [
        "ingest http://127.0.0.1:18080/ "
        "(webhooks: POST /ingest/{channel}; customers' order lookup: /track)",
        "admin http://127.0.0.1:18081/ (console: /console; API docs: /docs)",
    ]


def test_migrations_are_quiet_unless_asked(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A start at INFO says nothing of the 31 migrations; DEBUG shows them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure("INFO")  # its handler writes to the stderr captured here
        upgrade(f"sqlite:///{tmp_path}/quiet.db")
        assert "alembic" not in capsys.readouterr().err
        configure("DEBUG")
        upgrade(f"sqlite:///{tmp_path}/loud.db")
        assert "alembic.runtime.migration" in capsys.readouterr().err
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name in ("alembic", "sqlalchemy", "httpx"):
            logging.getLogger(name).setLevel(logging.NOTSET)
