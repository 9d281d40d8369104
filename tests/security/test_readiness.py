"""Defect 8 of the security review, ``/readyz``: it needs no key and opened a
broker connection on every call. The checks now run at most once every few
seconds, however many ask."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.readiness import Readiness
from infra.settings import Settings
from infra.topology import build_topology


def test_a_flood_of_readiness_probes_runs_the_checks_once(sqlite_engine: Engine) -> None:
    connections: list[int] = []
    app = create_admin_app(
        sqlite_engine,
        KeyAuth(sqlite_engine, {}),
        build_topology(Settings()),
        {"broker": lambda: connections.append(1)},
    )
    with TestClient(app) as client:
        answers = [client.get("/readyz") for _ in range(200)]
    assert {a.status_code for a in answers} == {200}
    assert len(connections) == 1


def test_the_checks_run_again_once_their_answer_is_old() -> None:
    now = [0.0]
    down = [False]

    def broker() -> None:
        if down[0]:
            raise ConnectionError("refused")

    readiness = Readiness({"broker": broker}, ttl=5.0, clock=lambda: now[0])
    assert readiness.results() == {"broker": "ok"}
    down[0] = True
    now[0] = 4.9
    assert readiness.results() == {"broker": "ok"}  # still the answer of 4.9 s ago
    now[0] = 5.0
    assert readiness.results()["broker"].startswith("unavailable: refused")
    assert readiness.runs == 2
