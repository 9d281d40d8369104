"""The fault suite's harness: orderbus as separate OS processes behind TCP
proxies, a signed-webhook load generator, recording downstream systems, and a
checker that counts at the sinks themselves.

Figures (named as RabbitMQ's Jepsen checker names them):
- lost: accepted with a 2xx, never delivered to a sink and not dead-lettered;
- duplicate effects: an order applied twice by one sink (two different
  idempotency keys for one order change; must be 0);
- redeliveries: the same idempotency key delivered again (allowed: the key
  absorbs it);
- recovered: processed by orderbus though the sender never saw a 2xx;
- unexplained: the reconciliation's remainder (must be 0).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Engine, func, select

from infra.bus import Bus
from infra.database import make_engine
from infra.settings import TARGETS, Settings
from infra.tables import arrivals, dead_letters, inbox, outbox
from infra.topology import build_topology
from orderbus.receiver import RecordingSink
from tests.e2e.process import OrderbusProcess, free_port, orderbus_env
from tests.factories import body_of, order_dict, signed_headers
from tests.faults.proxy import TcpProxy

SECRET = "fault-suite-signing-secret"
TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def via_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


class Downstream:
    """The existing systems. ``mode[target]``: ok, error (HTTP 500) or hang."""

    def __init__(self, hang_seconds: float = 2.0) -> None:
        self.mode = {t: "ok" for t in TARGETS}
        self.hang_seconds = hang_seconds
        self.sink = RecordingSink(self.respond).start()

    def respond(self, target: str, _body: dict[str, Any]) -> int:
        mode = self.mode.get(target, "ok")
        if mode == "error":
            return 500
        if mode == "hang":
            time.sleep(self.hang_seconds)
            return 503
        return 200

    def stop(self) -> None:
        self.sink.stop()


class Cluster:
    """ingest+admin, N routers and the consumers, each its own OS process,
    restarted by a supervisor when they die (as systemd would)."""

    def __init__(
        self,
        tmp: Path,
        amqp_url: str,
        database_url: str,
        namespace: str,
        downstream: Downstream,
        routers: int = 1,
        crash_points: dict[str, str] | None = None,
        proxies: bool = False,
        consumers: int = 1,
        broker_url_of: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        # a role's own broker URL (a cluster's nodes in the order it prefers them)
        self.broker_url_of = broker_url_of or {}
        self.amqp_url = amqp_url
        self.database_url = database_url
        amqp = urlsplit(amqp_url)
        pg = urlsplit(database_url)
        self.broker_proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672).start()
        self.db_proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432).start()
        self.ingest_port, self.admin_port = free_port(), free_port()
        self.env = orderbus_env(
            # The proxies cost throughput (every round trip crosses this
            # process): only the scenarios that cut connections use them.
            broker_url=via_proxy(amqp_url, self.broker_proxy.port) if proxies else amqp_url,
            database_url=via_proxy(database_url, self.db_proxy.port) if proxies else database_url,
            namespace=namespace,
            channel_secrets={"web-shop": [SECRET]},
            admin_tokens={"fault-operator": TOKEN},
            ingest_port=str(self.ingest_port),
            admin_port=str(self.admin_port),
            warehouse_url=downstream.sink.url("warehouse"),
            finance_url=downstream.sink.url("finance"),
            notification_url=downstream.sink.url("notification"),
            http_timeout="1",
            delivery_attempts="3",
            retry_initial_wait="0.2",
            retry_max_wait="1",
            heartbeat="10",
            confirm_timeout="5",
            connect_timeout="3",
        )
        crash_points = crash_points or {}
        self.roles: dict[str, list[str]] = {"ingest": ["ingest", "admin"]}
        if consumers == 1:
            self.roles["consumers"] = ["consumers"]
        for i in range(consumers if consumers > 1 else 0):
            self.roles[f"consumers{i}"] = ["consumers"]
        for i in range(routers):
            self.roles[f"router{i}"] = ["router"]
        self.crash_points = crash_points
        self.procs: dict[str, OrderbusProcess] = {}
        self.restarts: Counter[str] = Counter()
        self.exit_codes: dict[str, Counter[int]] = {}
        self.settings = Settings(
            namespace=namespace, broker_url=amqp_url, database_url=database_url
        )
        self.bus = Bus(amqp_url, build_topology(self.settings))
        self.engine: Engine = make_engine(database_url)
        self._supervise = threading.Event()
        self._lock = threading.Lock()

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}/ingest/web-shop"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _spawn(self, role: str) -> None:
        env = dict(self.env)
        if role in self.broker_url_of:
            env["ORDERBUS_BROKER_URL"] = self.broker_url_of[role]
        kind = "router" if role.startswith("router") else role.rstrip("0123456789")
        if kind in self.crash_points:
            env["ORDERBUS_CRASH_POINTS"] = self.crash_points[kind]
        proc = OrderbusProcess(env, self.roles[role], self.tmp / f"{role}.log").start()
        self.procs[role] = proc

    def start(self) -> None:
        for role in self.roles:
            self._spawn(role)
        self.procs["ingest"].wait_http(f"http://127.0.0.1:{self.ingest_port}/healthz")
        self.procs["ingest"].wait_http(f"{self.admin_url}/healthz")
        self._supervise.set()
        threading.Thread(target=self._supervisor, daemon=True).start()

    def _supervisor(self) -> None:
        while self._supervise.is_set():
            with self._lock:
                for role, proc in list(self.procs.items()):
                    code = proc.proc.poll() if proc.proc is not None else None
                    if code is not None and self._supervise.is_set():
                        self.restarts[role] += 1
                        self.exit_codes.setdefault(role, Counter())[code] += 1
                        self._spawn(role)
            time.sleep(0.2)

    def kill9(self, role: str) -> None:
        with self._lock:
            proc = self.procs[role].proc
            assert proc is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # the supervisor restarts it

    def sigterm(self, role: str, bound: float = 35.0) -> tuple[int, float]:
        with self._lock:
            code, seconds = self.procs[role].terminate(bound + 5)
            self.restarts[role] += 1
            self._spawn(role)
        return code, seconds

    def alive(self) -> dict[str, bool]:
        return {r: p.proc is not None and p.proc.poll() is None for r, p in self.procs.items()}

    def stop(self) -> dict[str, tuple[int, float]]:
        self._supervise.clear()
        time.sleep(0.3)
        exits = {role: proc.terminate(40) for role, proc in self.procs.items()}
        self.broker_proxy.stop()
        self.db_proxy.stop()
        self.engine.dispose()
        return exits

    def logs(self) -> str:
        return "\n".join(f"--- {r}\n{p.output()[-3000:]}" for r, p in self.procs.items())


@dataclass
class Workload:
    """Unique valid orders, ~5% re-sent as duplicates, a few invalid ones."""

    orders: int
    invalid: int = 10
    duplicate_rate: float = 0.05
    seed: int = 7
    sends: list[dict[str, Any]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        valid = [
            order_dict(external_id=f"F-{i:06d}", note="x" * rng.randint(200, 900))
            for i in range(self.orders)
        ]
        bad = [order_dict(external_id=f"BAD-{i:03d}", total="0.01") for i in range(self.invalid)]
        dups = [rng.choice(valid) for _ in range(int(self.orders * self.duplicate_rate))]
        self.sends = valid + bad + dups
        rng.shuffle(self.sends)

    @property
    def valid_ids(self) -> set[str]:
        return {s["external_id"] for s in self.sends if not s["external_id"].startswith("BAD-")}

    @property
    def invalid_ids(self) -> set[str]:
        return {s["external_id"] for s in self.sends if s["external_id"].startswith("BAD-")}

    def run(self, url: str, concurrency: int = 16, deadline: float = 900) -> None:
        stop_at = time.monotonic() + deadline
        lock = threading.Lock()
        with httpx.Client(timeout=15) as client:

            def send(data: dict[str, Any]) -> None:
                body = body_of(data)
                wait = 0.2
                while time.monotonic() < stop_at:
                    try:
                        r = client.post(url, content=body, headers=signed_headers(SECRET, body))
                    except httpx.HTTPError:
                        r = None
                    if r is not None and r.status_code == 202:
                        with lock:
                            self.accepted[data["external_id"]] += 1
                        return
                    if r is not None and 400 <= r.status_code < 500:
                        with lock:
                            self.refused[data["external_id"]] += 1
                        return
                    time.sleep(wait)  # 503 or no answer: retry, as a channel would
                    wait = min(wait * 2, 3.0)
                with lock:
                    self.gave_up.append(data["external_id"])

            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, self.sends))
        self.done.set()

    def start(self, url: str, concurrency: int = 16) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(url, concurrency), daemon=True)
        thread.start()
        return thread


@dataclass
class Report:
    scenario: str
    orders: int
    lost: int
    duplicate_effects: int
    redeliveries: int
    dead_lettered: int
    recovered: int
    unexplained: int
    recovery_s: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        rec = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        return (
            f"| {self.scenario} | {self.orders} | {self.lost} | {self.duplicate_effects} | "
            f"{self.dead_lettered} | {rec} | {self.redeliveries} | {self.recovered} | "
            f"{self.unexplained} |"
        )


HEADER = (
    "| scenario | orders | lost | duplicate effects | dead-lettered | recovery time (s) "
    "| redeliveries absorbed | recovered | unexplained |\n|---|---|---|---|---|---|---|---|---|"
)


class Checker:
    def __init__(self, cluster: Cluster, downstream: Downstream, workload: Workload) -> None:
        self.cluster = cluster
        self.downstream = downstream
        self.workload = workload

    def delivered(self) -> dict[str, set[str]]:
        return {
            t: {r.body["external_id"] for r in self.downstream.sink.received(t)} for t in TARGETS
        }

    def missing(self) -> int:
        expected = self.workload.valid_ids & set(self.workload.accepted)
        delivered = self.delivered()
        return sum(len(expected - delivered[t]) for t in TARGETS)

    def in_flight(self) -> int:
        topo = self.cluster.bus.topology
        depth = sum(self.cluster.bus.queue_depth(q.name) for q in topo.queues)
        depth += sum(self.cluster.bus.queue_depth(q) for q in topo.dead_letter_queues)
        with self.cluster.engine.connect() as conn:
            depth += conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            ).scalar_one()
        return int(depth)

    def wait_quiescent(self, fault_ended: float, timeout: float = 600) -> float | None:
        """Wait until nothing is in flight and the sinks are stable; the time
        from ``fault_ended`` until every accepted order reached every sink."""
        recovered_at: float | None = None
        deadline = time.monotonic() + timeout
        stable_since: float | None = None
        last = -1
        while time.monotonic() < deadline:
            if recovered_at is None and self.workload.done.is_set() and self.missing() == 0:
                recovered_at = time.monotonic()
            try:
                flight = self.in_flight()
            except Exception:
                flight = -1
            count = len(self.downstream.sink.requests)
            if flight == 0 and count == last and self.workload.done.is_set():
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 3:
                    break
            else:
                stable_since = None
            last = count
            time.sleep(0.5)
        else:
            raise AssertionError(f"not quiescent after {timeout}s\n{self.cluster.logs()}")
        return None if recovered_at is None else max(0.0, recovered_at - fault_ended)

    def retry_dead_letters(self, reason: str) -> int:
        with httpx.Client(timeout=30) as client:
            r = client.post(
                f"{self.cluster.admin_url}/dead-letters/retry",
                json={"reason": reason, "limit": 1000},
                headers=AUTH,
            )
            r.raise_for_status()
            return len(r.json()["retried"])

    def report(self, scenario: str, recovery_s: float | None, extra_letters: int = 0) -> Report:
        expected = self.workload.valid_ids & set(self.workload.accepted)
        sink = self.downstream.sink
        lost = dup_effects = redeliveries = 0
        per_target: dict[str, Any] = {}
        for target in TARGETS:
            received = sink.received(target)
            keys_per_order: dict[str, set[str]] = {}
            for r in received:
                keys_per_order.setdefault(r.body["external_id"], set()).add(r.idempotency_key)
            missing = expected - set(keys_per_order)
            unexpected = set(keys_per_order) - self.workload.valid_ids
            lost += len(missing)
            dup_effects += sum(len(k) - 1 for k in keys_per_order.values()) + len(unexpected)
            repeated = len(received) - sum(len(k) for k in keys_per_order.values())
            redeliveries += repeated
            per_target[target] = {
                "delivered": len(keys_per_order),
                "repeated": repeated,
                "missing": sorted(missing)[:10],
            }
        with self.cluster.engine.connect() as conn:
            letters = conn.execute(select(dead_letters)).all()
            arrived = conn.execute(select(func.count()).select_from(arrivals)).scalar_one()
            grouped = select(arrivals.c.outcome, func.count()).group_by(arrivals.c.outcome)
            outcomes: dict[str, int] = {row[0]: row[1] for row in conn.execute(grouped)}
            outbox_ids = conn.execute(
                select(outbox.c.routing_key, outbox.c.message_id).distinct()
            ).all()
            inbox_ids = {(r.consumer, r.message_id) for r in conn.execute(select(inbox))}
        open_letters = [d for d in letters if d.status == "open"]
        router_letters = [d for d in letters if d.queue.endswith(".router")]
        # Reconciliation, per message: what the router received = its outcomes
        # (arrivals + router dead letters) + in flight; deliveries owed (outbox)
        # = delivered (inbox) + open dead letters + in flight.
        in_flight = self.in_flight()
        sent_ok = sum(self.workload.accepted.values())
        router_received = arrived + len(router_letters) - extra_letters
        recovered = max(0, router_received - sent_ok)
        owed = {(rk.removeprefix("deliver."), mid) for rk, mid in outbox_ids}
        letter_keys = {(d.queue.rsplit(".", 1)[-1], d.message_id) for d in open_letters}
        unexplained_deliveries = len(owed - inbox_ids - letter_keys)
        unexplained = max(0, sent_ok - router_received) + unexplained_deliveries + in_flight
        invalid_lettered = {
            json.loads(d.body).get("external_id")
            for d in router_letters
            if d.reason == "validation_failed"
        }
        accepted_invalid = self.workload.invalid_ids & set(self.workload.accepted)
        lost += len(accepted_invalid - invalid_lettered)
        return Report(
            scenario=scenario,
            orders=len(expected),
            lost=lost,
            duplicate_effects=dup_effects,
            redeliveries=redeliveries,
            dead_lettered=len(open_letters),
            recovered=recovered,
            unexplained=unexplained,
            recovery_s=recovery_s,
            details={
                "per_target": per_target,
                "outcomes": outcomes,
                "sent_ok": sent_ok,
                "gave_up": len(self.workload.gave_up),
                "refused": dict(self.workload.refused),
                "dead_letter_reasons": Counter(d.reason for d in open_letters),
                "restarts": dict(self.cluster.restarts),
                "exit_codes": {r: dict(c) for r, c in self.cluster.exit_codes.items()},
            },
        )


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def kill_broker() -> None:
    """kill -9 of the RabbitMQ node's Erlang VM (T2)."""
    out = subprocess.run(
        ["rabbitmqctl", "eval", "os:getpid()."], check=True, capture_output=True, text=True,
        timeout=60,
    ).stdout  # fmt: skip
    os.kill(int(out.strip().strip('"')), signal.SIGKILL)


def start_broker(timeout: float = 120) -> None:
    """Start the node again and wait until it serves (``rabbitmq-server -detached``)."""
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # -detached returns before the node is known to epmd
        pinged = subprocess.run(["rabbitmqctl", "ping"], capture_output=True, timeout=60)
        if pinged.returncode == 0:
            break
        time.sleep(1)
    subprocess.run(
        ["rabbitmqctl", "await_startup", "--timeout", str(int(timeout))],
        check=True, capture_output=True, timeout=timeout + 10,
    )  # fmt: skip
