"""The compose file's process set, run on this machine as CI runs things
(issue 20: the compose file had never run): its one-off migration, then each
orderbus service with the compose file's own command and environment (the
secrets from .env.example; only the broker, database, systems and ports
pointed at this test's), its health check run until it passes, then one
signed order through them to the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infra.settings import TARGETS
from orderbus.runner import COMPONENTS
from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, free_port, orderbus
from tests.factories import body_of, order_dict, signed_headers
from tests.unit.test_deployment_files import ROOT, example_env, substituted

pytestmark = pytest.mark.e2e


def compose_env(
    compose: dict[str, Any], amqp_url: str, postgres_url: str, downstream: Downstream
) -> dict[str, str]:
    """The services' environment as compose would give it, pointed at this
    test's broker vhost, database schema, systems and free ports."""
    example = example_env()
    env = {k: substituted(str(v), example) for k, v in compose["x-orderbus-env"].items()}
    env.update(ORDERBUS_BROKER_URL=amqp_url, ORDERBUS_DATABASE_URL=postgres_url)
    return here_env(env, downstream)


def here_env(env: dict[str, str], downstream: Downstream) -> dict[str, str]:
    """A service's ``env`` run here: free ports, this test's systems, and this
    process's environment without its own ORDERBUS_ settings."""
    env = env | {"ORDERBUS_INGEST_PORT": str(free_port()), "ORDERBUS_ADMIN_PORT": str(free_port())}
    env |= {f"ORDERBUS_{t.upper()}_URL": downstream.sink.url(t) for t in TARGETS}
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBUS_")}
    return base | env


def healthy(check: list[str], env: dict[str, str]) -> bool:
    """Run a compose health check here (``orderbus`` as this Python's module,
    the HTTP ports as this test's)."""
    command = check[1:]
    if command[0] == "orderbus":
        command = [sys.executable, "-m", "orderbus.cli", *command[1:]]
    else:
        command = [sys.executable, *command[1:]]
        command[-1] = (
            command[-1]
            .replace(":8080/", f":{env['ORDERBUS_INGEST_PORT']}/")
            .replace(":8081/", f":{env['ORDERBUS_ADMIN_PORT']}/")
        )
    done = subprocess.run(command, env=env, capture_output=True, timeout=30)
    return done.returncode == 0


def wait_healthy(
    procs: dict[str, OrderbusProcess],
    services: dict[str, Any],
    envs: dict[str, dict[str, str]],
    within: float,
) -> None:
    """Run each service's health check until it passes (each process alive meanwhile)."""
    deadline = time.monotonic() + within
    waiting = set(procs)
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            child = procs[name].proc
            assert child is not None and child.poll() is None, procs[name].output()
            if healthy(services[name]["healthcheck"]["test"], envs[name]):
                waiting.discard(name)
        time.sleep(1)
    assert not waiting, f"not healthy in {within:g} s: {sorted(waiting)}"


def test_the_compose_files_services_run_pass_their_health_checks_and_deliver(
    amqp_url: str, postgres_url: str, downstream: Downstream, tmp_path: Path
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    env = compose_env(compose, amqp_url, postgres_url, downstream)
    migrated = orderbus(*services["migrate"]["command"], env=env)
    assert migrated.returncode == 0, migrated.stderr
    procs = {
        name: OrderbusProcess(env, services[name]["command"][1:], tmp_path / f"{name}.log").start()
        for name in COMPONENTS
    }
    try:
        wait_healthy(procs, services, dict.fromkeys(COMPONENTS, env), 90)
        secret = env["ORDERBUS_CHANNEL_SECRETS"].split('"')[3]  # from .env.example
        body = body_of(order_dict(external_id="COMPOSE-1"))
        ingest = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest/web-shop"
        answer = httpx.post(ingest, content=body, headers=signed_headers(secret, body), timeout=30)
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while not downstream.sink.received("warehouse") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [r.body["external_id"] for r in downstream.sink.received("warehouse")] == [
            "COMPOSE-1"
        ]
    finally:
        for proc in procs.values():
            proc.terminate()
