"""orderbus end to end, as separate OS processes, on the local RabbitMQ and
PostgreSQL, each run in a vhost and a schema of its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pika
from sqlalchemy import Engine, create_engine, text

from bench import baseline
from bench.amqp import Outgoing, StreamingPublisher
from bench.webhooks import SECRET, WebhookSender
from bench.workload import Workload
from canonical.envelope import H_RECEIVED_AT
from infra.database import upgrade
from infra.settings import TARGETS, Settings
from infra.topology import build_topology, ingest_routing_key

NAMESPACE = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcessFigures:
    name: str
    cpu_s: float
    peak_rss_mb: float


@dataclass
class PipelineResult:
    orders: int  # unique valid orders, each delivered to every target
    inputs: int  # messages published, duplicates and invalid ones included
    routers: int
    rate: float | None  # the publisher's pace (inputs/s), None for flat out
    seconds: float
    orders_per_s: float
    latency_ms: dict[str, float]  # p50/p95/p99/max, ingest to consumer, all targets
    processes: list[ProcessFigures] = field(default_factory=list)
    machine_busy: float = 0.0  # share of all cores busy during the run, 0..1
    broker_cpu_s: float = 0.0  # RabbitMQ's Erlang VM
    database_cpu_s: float = 0.0  # PostgreSQL's processes (those alive at the end)
    driver_cpu_s: float = 0.0  # this process: publishing the inputs, polling the sink
    # CPU ms per order during the run, by part: "router-1/router", "router-1/relay",
    # "consumers/warehouse", ..., "sink", "broker", "database", "driver"
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    # PostgreSQL during the run: backends seen waiting on a lock (sampled once
    # a second), deadlocks, and transactions rolled back (a router that lost
    # a race on an order rolls back and retries)
    contention: dict[str, float] = field(default_factory=dict)

    def cpu_ms(self, *prefixes: str) -> float:
        """The CPU ms per order of the parts whose name starts with one of these."""
        return round(sum(v for k, v in self.cpu_ms_per_order.items() if k.startswith(prefixes)), 2)

    @property
    def own_ms(self) -> float:
        """orderbus's (or the plain pipeline's) own processes, without the sink."""
        return self.cpu_ms("router", "consumers", "ingest")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@contextmanager
def private_vhost(base_url: str) -> Iterator[str]:
    parts = urlsplit(base_url)
    name = f"orderbus-bench-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, parts.username or "guest", ".*", ".*", ".*")
    try:
        yield parts._replace(path="/" + quote(name, safe="")).geturl()
    finally:
        _rabbitmqctl("delete_vhost", name)


@contextmanager
def private_schema(base_url: str, prefix: str = "bench", revision: str = "head") -> Iterator[str]:
    """A PostgreSQL schema of its own (for a run or a test), migrated to
    ``revision``, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade(url, revision)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Contention:
    """Lock waits and rollbacks in this run's database, from PostgreSQL's views."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.samples = 0
        self.waiting = 0
        self.last = 0.0
        self.first = self._counters()

    def _counters(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT deadlocks, xact_rollback FROM pg_stat_database "
                    "WHERE datname = current_database()"
                )
            ).one()
        return int(row[0]), int(row[1])

    def sample(self) -> None:
        if time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        with self.engine.connect() as conn:
            self.waiting += int(
                conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
                or 0
            )
        self.samples += 1

    def figures(self) -> dict[str, float]:
        deadlocks, rollbacks = self._counters()
        return {
            "lock_waiting_backends_per_sample": round(self.waiting / max(self.samples, 1), 3),
            "samples": self.samples,
            "deadlocks": deadlocks - self.first[0],
            "rollbacks": rollbacks - self.first[1],
        }


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _cpu_by_pid(command: str) -> dict[int, int]:
    """CPU clock ticks so far of each live process with this command name."""
    found: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text_ = stat.read_text()
        except OSError:
            continue
        name = text_[text_.index("(") + 1 : text_.rindex(")")]
        if name == command:
            fields = text_.rsplit(")", 1)[1].split()
            found[int(stat.parent.name)] = int(fields[11]) + int(fields[12])
    return found


def _cpu_since(command: str, before: dict[int, int]) -> float:
    """CPU seconds the processes with this command name used since ``before``
    (a :func:`_cpu_by_pid` snapshot): those alive now, less what each had
    then; a process that ended meanwhile is not counted (an undercount, never
    a negative figure: PostgreSQL's backends come and go)."""
    now = _cpu_by_pid(command)
    return sum(ticks - before.get(pid, 0) for pid, ticks in now.items()) / CLOCK_TICKS


def _figures(name: str, pid: int) -> ProcessFigures:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime + stime
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return ProcessFigures(name, round(cpu, 1), round(hwm, 1))


def _thread_ticks(pid: int) -> dict[str, int]:
    """CPU clock ticks so far of each named thread of a process (orderbus
    names its components' threads ``ob-<component>``; the rest is ``other``)."""
    ticks: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        name = comm.removeprefix("ob-") if comm.startswith("ob-") else "other"
        ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


class _Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logs}")

    def ticks(self) -> dict[str, int]:
        """CPU ticks so far by part: ``process/thread`` for orderbus's
        processes, the process's name for the others (the sink)."""
        found: dict[str, int] = {}
        for name, proc in self.procs:
            for thread, n in _thread_ticks(proc.pid).items():
                key = name if name == "sink" else f"{name}/{thread}"
                found[key] = found.get(key, 0) + n
        return found

    def figures(self) -> list[ProcessFigures]:
        return [_figures(name, proc.pid) for name, proc in self.procs]

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_consumers(amqp_url: str, queues: dict[str, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        except pika.exceptions.AMQPError:
            time.sleep(0.5)
            continue
        try:
            channel = conn.channel()
            counts = {}
            for queue in queues:
                try:
                    counts[queue] = channel.queue_declare(queue, passive=True).method.consumer_count
                except pika.exceptions.ChannelClosedByBroker:
                    counts[queue] = 0
                    channel = conn.channel()
            if all(counts[q] >= n for q, n in queues.items()):
                return
        finally:
            if conn.is_open:
                conn.close()
        time.sleep(0.5)
    raise RuntimeError(f"orderbus processes did not start consuming {sorted(queues)}")


def _stamp(headers: dict[str, object]) -> dict[str, object]:
    return {**headers, H_RECEIVED_AT: datetime.now(UTC).isoformat()}


def run_pipeline(
    amqp_base: str,
    database_base: str,
    workload: Workload,
    *,
    routers: int = 1,
    rate: float | None = None,
    logs: Path,
    timeout: float = 1800,
    settings: dict[str, str] | None = None,
    plain: bool = False,
    webhooks: bool = False,
) -> PipelineResult:
    """One run; ``plain`` runs the straightforward pipeline
    (:mod:`bench.baseline`) in place of orderbus's router and consumers;
    ``webhooks`` sends the orders as signed HTTP requests to orderbus's ingest
    (a process of its own) in place of publishing them to the broker."""
    if plain and webhooks:
        raise ValueError("the plain pipeline has no webhook ingest")
    logs.mkdir(parents=True, exist_ok=True)
    topology = build_topology(Settings(namespace=NAMESPACE))
    expected = {target: len(ids) for target, ids in workload.expected.items()}
    with private_vhost(amqp_base) as amqp_url, private_schema(database_base) as db_url:
        processes = _Processes(logs)
        sink_port = _free_port()
        processes.start(
            "sink", [sys.executable, "-m", "bench.sink", str(sink_port)], dict(os.environ)
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBUS_")}
        env.update(
            ORDERBUS_BROKER_URL=amqp_url,
            ORDERBUS_DATABASE_URL=db_url,
            ORDERBUS_NAMESPACE=NAMESPACE,
            **{f"ORDERBUS_{t.upper()}_URL": f"http://127.0.0.1:{sink_port}/{t}" for t in TARGETS},
        )
        env.update(settings or {})  # e.g. ORDERBUS_BATCH_SIZE for an experiment
        cli = [sys.executable, "-m", "orderbus.cli", "--log-level", "WARNING", "run"]
        if plain:
            env.update(
                BENCH_AMQP_URL=amqp_url,
                BENCH_DATABASE_URL=db_url.replace("+psycopg", ""),
                BENCH_SINK_URL=f"http://127.0.0.1:{sink_port}/",
                BENCH_NAMESPACE=NAMESPACE,
            )
            with create_engine(db_url).begin() as conn:
                conn.exec_driver_sql(baseline.SCHEMA)
            cli = [sys.executable, "-m", "bench.baseline"]
        try:
            processes.start("consumers", [*cli, "consumers"], env)
            for n in range(routers):
                processes.start(f"router-{n + 1}", [*cli, "router"], env)
            if webhooks:
                ingest_port = _free_port()
                secrets = {m.channel: [SECRET] for m in workload.messages}
                ingest_env = env | {
                    "ORDERBUS_INGEST_PORT": str(ingest_port),
                    "ORDERBUS_CHANNEL_SECRETS": json.dumps(secrets),
                }
                processes.start("ingest", [*cli, "ingest"], ingest_env)
                _wait_for_port(ingest_port)
            _wait_for_consumers(
                amqp_url,
                {topology.router_queue: routers} | {topology.queue_for(t).name: 1 for t in TARGETS},
            )
            outgoing = [
                Outgoing(
                    topology.exchange,
                    ingest_routing_key(m.channel),
                    m.body,
                    m.message_id,
                    m.headers,
                )
                for m in workload.messages
            ]
            engine = create_engine(db_url)
            busy0, total0 = _machine_cpu()
            driver0 = time.process_time()
            broker0, db0 = _cpu_by_pid("beam.smp"), _cpu_by_pid("postgres")
            parts0 = processes.ticks()
            started = time.perf_counter()
            sender: WebhookSender | None = None
            if webhooks:
                orders = [(m.channel, m.body) for m in workload.messages]
                sender = WebhookSender("127.0.0.1", ingest_port, orders, rate=rate)
                thread = threading.Thread(target=sender.run, daemon=True)
            else:
                publisher = StreamingPublisher(amqp_url, outgoing, rate=rate, stamp=_stamp)
                thread = threading.Thread(target=publisher.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + timeout
            sink_counts = f"http://127.0.0.1:{sink_port}/counts"
            poller = httpx.Client()  # one connection: the driver's CPU competes with orderbus
            contention = Contention(engine)
            while True:
                # Poll the sink (cheap; polling the database would load it),
                # then make sure of the inboxes once the sink has everything.
                contention.sample()
                counts = poller.get(sink_counts).json()
                if all(counts.get(f"/{t}", 0) >= n for t, n in expected.items()):
                    with engine.connect() as conn:
                        rows = conn.execute(text(DELIVERED_PLAIN if plain else DELIVERED)).all()
                    done = {r[0]: r[1] for r in rows}
                    if all(done.get(t, 0) >= n for t, n in expected.items()):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not delivered in {timeout}s: {counts} of {expected}")
                processes.check()
                time.sleep(0.1)
            seconds = time.perf_counter() - started
            busy1, total1 = _machine_cpu()
            driver_cpu = time.process_time() - driver0
            broker_cpu, db_cpu = _cpu_since("beam.smp", broker0), _cpu_since("postgres", db0)
            parts = {k: (v - parts0.get(k, 0)) / CLOCK_TICKS for k, v in processes.ticks().items()}
            parts |= {"broker": broker_cpu, "database": db_cpu, "driver": driver_cpu}
            waits = contention.figures()
            thread.join(60)
            figures = processes.figures()
            latency = _latency(engine, PLAIN_STAGES if plain else STAGES)
            if sender is not None:
                answers = sorted(sender.answer_ms)
                latency |= {
                    f"webhook_{name}": round(
                        answers[min(len(answers) - 1, int(q * len(answers)))], 1
                    )
                    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
                }
                latency["webhook_503_retried"] = sender.retried
            counts = poller.get(sink_counts).json()
            poller.close()
            engine.dispose()
        finally:
            processes.stop()
    missing = {t: n for t, n in expected.items() if counts.get(f"/{t}", 0) < n}
    if missing:
        raise RuntimeError(f"the sinks did not receive everything: {counts} of {expected}")
    return PipelineResult(
        orders=workload.unique_valid,
        inputs=len(workload.messages),
        routers=routers,
        rate=rate,
        seconds=round(seconds, 2),
        orders_per_s=round(workload.unique_valid / seconds, 1),
        latency_ms=latency,
        processes=figures,
        machine_busy=round((busy1 - busy0) / max(1, total1 - total0), 2),
        broker_cpu_s=round(broker_cpu, 1),
        database_cpu_s=round(db_cpu, 1),
        driver_cpu_s=round(driver_cpu, 1),
        contention=waits,
        cpu_ms_per_order={
            k: round(1000 * v / workload.unique_valid, 2) for k, v in sorted(parts.items()) if v
        },
    )


DELIVERED = "SELECT consumer, count(*) FROM inbox WHERE outcome = 'delivered' GROUP BY consumer"
DELIVERED_PLAIN = "SELECT target, count(*) FROM plain_deliveries GROUP BY target"

STAGES = {
    # ingest stamp -> the router's commit
    "router": "SELECT EXTRACT(EPOCH FROM (processed_at - received_at)) * 1000 FROM arrivals "
    "WHERE outcome = 'new'",
    # the router's commit -> the relay's confirmed publish
    "relay": "SELECT EXTRACT(EPOCH FROM (published_at - created_at)) * 1000 FROM outbox",
    # the confirmed publish -> the consumer's delivery to the system
    "consumer": "SELECT EXTRACT(EPOCH FROM (i.delivered_at - o.published_at)) * 1000 "
    "FROM inbox i JOIN outbox o ON o.message_id = i.message_id WHERE i.outcome = 'delivered'",
    # ingest stamp -> each consumer's delivery: the figure that counts (with
    # the stamp, for the figure without the run's first seconds)
    "total": "SELECT EXTRACT(EPOCH FROM (i.delivered_at - a.received_at)) * 1000, "
    "EXTRACT(EPOCH FROM a.received_at) "
    "FROM inbox i JOIN orders o ON o.order_number = i.order_number "
    "JOIN arrivals a ON a.order_id = o.id AND a.outcome = 'new' WHERE i.outcome = 'delivered'",
}


PLAIN_STAGES = {
    "total": "SELECT EXTRACT(EPOCH FROM (d.delivered_at - o.received_at)) * 1000, "
    "EXTRACT(EPOCH FROM o.received_at) "
    "FROM plain_deliveries d JOIN plain_orders o ON o.external_id = d.external_id",
}
# A paced run's first seconds: the processes' first batches (cold: the first
# router batch cost 11 ms of CPU for one order) fall behind, later batches grow
# and the backlog drains within a second or two; a daemon pays it once a start.
# The figure without them is shown beside the whole run's, never in its place.
SETTLING_S = 2.0


def _latency(engine: Engine, stages: dict[str, str]) -> dict[str, float]:
    """Percentiles (ms) of ingest-to-delivery latency, and the median of each stage."""
    figures: dict[str, float] = {}
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))  # fresh tables: plan the joins well
        for stage, query in stages.items():
            rows = [tuple(float(v) for v in r) for r in conn.execute(text(query))]
            values = sorted(r[0] for r in rows)
            if not values:
                continue
            if stage == "total":  # (ms, the order's ingest stamp)
                figures |= {"p50": _pick(values, 0.5), "p95": _pick(values, 0.95)}
                figures |= {"p99": _pick(values, 0.99), "max": round(values[-1], 1)}
                start = min(at for _, at in rows)
                settled = sorted(ms for ms, at in rows if at >= start + SETTLING_S)
                if settled:
                    figures["p99_after_2s"] = _pick(settled, 0.99)
            else:
                figures[f"{stage}_p50"] = _pick(values, 0.5)
    return figures


def _pick(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values``, to 0.1 ms."""
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)
