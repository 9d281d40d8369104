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


def test_run_without_systems_says_what_to_set_or_to_try_the_stand_in(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("WAREHOUSE", "FINANCE", "NOTIFICATION", "BROKER", "DATABASE"):
        monkeypatch.delenv(f"ORDERBUS_{name}_URL", raising=False)
    monkeypatch.setenv("ORDERBUS_DATA_DIR", str(tmp_path))
    assert cli.main(["--log-level", "WARNING", "run", "router", "consumers"]) == 2
    told = capsys.readouterr().err
    assert "export ORDERBUS_WAREHOUSE_URL=" in told and "export ORDERBUS_FINANCE_URL=" in told
    assert "orderbus run --stand-in" in told


def test_the_stand_in_takes_every_system_without_an_address(tmp_path: object) -> None:
    import httpx

    settings = Settings(data_dir=str(tmp_path), finance_url="http://erp.internal/orders")
    with_stand_in, sink = cli.with_stand_in(settings)
    try:
        assert with_stand_in.finance_url == "http://erp.internal/orders"  # kept
        assert with_stand_in.warehouse_url == sink.url("warehouse")
        assert with_stand_in.notification_url == sink.url("notification")
        answer = httpx.post(sink.url("warehouse"), json={"order_number": "OB1"})
        assert answer.status_code == 200
        assert [r.body["order_number"] for r in sink.received("warehouse")] == ["OB1"]
    finally:
        sink.stop()


def test_db_current_history_and_downgrade(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.database import migrations

    monkeypatch.setenv("ORDERBUS_DATABASE_URL", f"sqlite:///{tmp_path}/db.db")
    newest, before = migrations()[0][0], migrations()[1][0]
    assert cli.main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == "none"
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"database at revision {newest}"
    assert cli.main(["db", "history"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(f"{newest}  ") and len(listed[0]) > len(newest) + 10
    assert len(listed) == len(migrations())
    assert cli.main(["db", "downgrade", before]) == 0
    assert capsys.readouterr().out.strip() == f"database at revision {before}"
    assert cli.main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == before


def test_status_tells_each_components_heartbeat_and_fails_when_one_is_down(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from infra.database import make_engine
    from infra.heartbeats import STALE_AFTER, beat

    monkeypatch.setenv("ORDERBUS_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    beat(engine, "host:1", {"router": ["t.router"]}, datetime.now(UTC))
    assert cli.main(["status", "router"]) == 0
    assert capsys.readouterr().out.startswith("router: up, 1 live process(es), last beat ")
    assert cli.main(["status", "router", "consumers"]) == 1
    assert "consumers: no heartbeat" in capsys.readouterr().out
    from sqlalchemy import update

    from infra.tables import component_heartbeats

    with engine.begin() as conn:  # its process was killed: the beat goes stale
        old = datetime.now(UTC) - STALE_AFTER - timedelta(seconds=5)
        conn.execute(update(component_heartbeats).values(beat_at=old))
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().out.startswith("router: DOWN, 0 live process(es)")


def test_the_metrics_port_answers_without_a_key_and_serves_nothing_else(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    settings = Settings(broker_url="memory://", database_url=sqlite_url, metrics_port=19100)
    daemon = Daemon(bootstrap(settings), ("admin",))
    daemon.build()
    assert "metrics http://127.0.0.1:19100/ (Prometheus: /metrics, no key)" in daemon.listening
    app = bootstrap(settings)
    admin = app.admin_app()
    with TestClient(app.metrics_app(admin)) as client, TestClient(admin) as keyed:
        answer = client.get("/metrics")
        assert answer.status_code == 200 and "orderbus_outbox_unpublished" in answer.text
        assert client.get("/dead-letters").status_code == 404
        assert client.get("/docs").status_code == 404
        assert keyed.get("/metrics").status_code == 401  # the admin API's still wants a key


def test_status_before_anything_ran_says_so_without_a_traceback(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERBUS_DATABASE_URL", f"sqlite:///{tmp_path}/never-run.db")
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert "has orderbus run against this database?" in err and "Traceback" not in err
    upgrade(f"sqlite:///{tmp_path}/never-run.db")
    assert cli.main(["status"]) == 1
    assert "no component has run against this database yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "nosuch"])
    assert "'nosuch' is not one of router, consumers, ingest, admin" in capsys.readouterr().err


def test_output_cut_short_by_its_reader_is_no_error(tmp_path: object) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBUS_")}
    env["ORDERBUS_DATA_DIR"] = str(tmp_path)
    # `true` reads nothing and is gone before orderbus writes its first line
    reader = subprocess.run(
        f"{sys.executable} -m orderbus.cli config check | true",
        shell=True, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert reader.returncode == 0 and "Traceback" not in reader.stderr, reader.stderr
