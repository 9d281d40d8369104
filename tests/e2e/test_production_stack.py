"""The production recipe (deploy/production/stack.yml) run on this machine as
CI runs things (issue 20: a recipe for more than one machine, with the
commands that prove it): a three-node RabbitMQ cluster
(scripts/rabbitmq-cluster.sh) stands in for mq1-mq3 and a PostgreSQL primary
with its synchronous standby (scripts/postgres-standby.sh) for db1 and db2;
each orderbus service of the stack runs with its own command and settings
(the hosts pointed at these, the secrets from the recipe's .env.example), its
health check passes, and an order goes through. Then the primary is killed
and the standby promoted: no process is restarted or repointed, and the next
order goes through too."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, orderbus
from tests.e2e.test_compose_process_set import here_env, wait_healthy
from tests.factories import body_of, order_dict, signed_headers
from tests.unit.test_deployment_files import ROOT, substituted

pytestmark = pytest.mark.e2e

RECIPE = ROOT / "deploy" / "production"
NODE_PORTS = {"mq1": 5681, "mq2": 5682, "mq3": 5683}
DB_PORTS = {"db1": 5441, "db2": 5442}


def _script(name: str, *args: str) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def machines() -> Iterator[None]:
    """The recipe's five servers, on this machine."""
    _script("postgres-standby.sh", "stop")
    _script("rabbitmq-cluster.sh", "stop")
    _script("rabbitmq-cluster.sh", "start")
    _script("postgres-standby.sh", "start")
    try:
        yield
    finally:
        _script("postgres-standby.sh", "stop")
        _script("rabbitmq-cluster.sh", "stop")


def recipe_env() -> dict[str, str]:
    lines = (RECIPE / ".env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def here(value: str) -> str:
    """A setting of the stack with its hosts pointed at this machine's
    stand-ins (the local cluster lets guest connect from localhost)."""
    value = re.sub(
        r"amqp://[^@]+@(mq\d):5672//",
        lambda m: f"amqp://guest:guest@localhost:{NODE_PORTS[m.group(1)]}//",
        value,
    )
    value = re.sub(
        r"postgresql\+psycopg://[^@]+@/orderbus", "postgresql+psycopg://postgres@/test", value
    )
    return re.sub(r"host=(db\d):5432", lambda m: f"host=127.0.0.1:{DB_PORTS[m.group(1)]}", value)


def service_env(service: dict[str, Any], downstream: Downstream) -> dict[str, str]:
    example = recipe_env()
    env = {k: here(substituted(str(v), example)) for k, v in service["environment"].items()}
    return here_env(env, downstream)


def _send(env: dict[str, str], external_id: str) -> None:
    secret = env["ORDERBUS_CHANNEL_SECRETS"].split('"')[3]  # from the recipe's .env.example
    body = body_of(order_dict(external_id=external_id))
    url = f"http://127.0.0.1:{env['ORDERBUS_INGEST_PORT']}/ingest/web-shop"
    answer = httpx.post(url, content=body, headers=signed_headers(secret, body), timeout=60)
    assert answer.status_code == 202, answer.text


def _delivered(downstream: Downstream, external_id: str, within: float = 90) -> bool:
    """Each of the three systems got the order."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(
            any(r.body["external_id"] == external_id for r in downstream.sink.received(target))
            for target in ("warehouse", "finance", "notification")
        ):
            return True
        time.sleep(0.3)
    return False


def test_the_recipes_services_run_on_a_cluster_and_a_standby_and_survive_a_failover(
    machines: None, downstream: Downstream, tmp_path: Path
) -> None:
    stack = yaml.safe_load((RECIPE / "stack.yml").read_text(encoding="utf-8"))
    services = stack["services"]
    ours = {n: s for n, s in services.items() if "image" in s and "orderbus" in str(s["image"])}
    assert set(ours) == {"migrate", "ingest-a", "ingest-b", "router-a", "router-b",
                         "consumers-a", "consumers-b", "admin"}  # fmt: skip
    envs = {name: service_env(s, downstream) for name, s in ours.items()}
    migrated = orderbus(*ours["migrate"]["command"], env=envs["migrate"])
    assert migrated.returncode == 0, migrated.stderr
    running = {name: s for name, s in ours.items() if name != "migrate"}
    procs = {
        name: OrderbusProcess(envs[name], s["command"][1:], tmp_path / f"{name}.log").start()
        for name, s in running.items()
    }
    try:
        wait_healthy(procs, running, envs, 120)
        _send(envs["ingest-a"], "STACK-1")
        assert _delivered(downstream, "STACK-1"), {n: p.output()[-2000:] for n, p in procs.items()}
        _script("postgres-standby.sh", "kill")
        promoted = _script("postgres-standby.sh", "promote")
        assert "5442: primary" in promoted, promoted
        _send(envs["ingest-b"], "STACK-2")
        assert _delivered(downstream, "STACK-2"), {n: p.output()[-2000:] for n, p in procs.items()}
        for process in procs.values():  # none died or was restarted
            assert process.proc is not None and process.proc.poll() is None, process.output()
        for target in ("warehouse", "finance", "notification"):
            ids = sorted(r.body["external_id"] for r in downstream.sink.received(target))
            assert ids == ["STACK-1", "STACK-2"], (target, ids)
    finally:
        for process in procs.values():
            process.terminate()
