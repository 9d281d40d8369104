"""``python -m bench.profile``: where a router and a consumer spend their time.

Runs the router's batch handler over N orders, then the warehouse consumer's
batch handler over the resulting deliveries (to the benchmark's sink, over
HTTP), in this process against PostgreSQL, under cProfile; prints CPU and
wall time per message and the functions with the most cumulative CPU time
(the profiler's clock is the process's CPU time: waiting for the database,
the broker or the sink does not count).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import time

from sqlalchemy import select

from bench.pipeline import _free_port, private_schema
from bench.workload import Workload
from canonical.envelope import Envelope
from infra.database import make_engine
from infra.messages import Delivery
from infra.settings import Settings
from infra.tables import outbox
from infra.topology import build_topology
from infra.transports import KeepAliveTransport
from router.service import RouterService
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy

DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _timed(
    label: str, count: int, work: list[list[Delivery]], handle: object, top: int, sort: str
) -> None:
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
    cpu, wall = time.process_time(), time.perf_counter()
    if top:
        profiler.enable()
    for batch in work:
        results = handle(batch)  # type: ignore[operator]
        failed = [r for r in results if r is not None]
        if failed and label == "consumer":
            raise RuntimeError(f"{label}: {failed[0]!r}")
    profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"\n## {label}: {count} messages, {cpu / count * 1000:.2f} ms CPU and "
        f"{wall / count * 1000:.2f} ms wall each"
    )
    if not top:
        return
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--top", type=int, default=25, help="functions listed (0: no profiler, the CPU alone)"
    )
    parser.add_argument(
        "--sort", default="cumulative", choices=["cumulative", "tottime"], help="order of the list"
    )
    parser.add_argument("--database-url", default=DATABASE)
    args = parser.parse_args(argv)
    workload = Workload(args.orders, duplicate_rate=0.0, invalid_rate=0.0).build()
    port = _free_port()
    sink = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port)])
    try:
        with private_schema(args.database_url) as url:
            engine = make_engine(url)
            router = RouterService(engine, build_topology(Settings(namespace="profile")))
            inputs = [
                Delivery(
                    queue="profile.router",
                    body=m.body,
                    message_id=m.message_id,
                    correlation_id=m.message_id,
                    headers=Envelope.new(m.channel, m.message_id).headers(),
                    exchange="profile.orders",
                    routing_key=f"ingest.{m.channel}",
                    redelivered=False,
                    content_type="application/json",
                    deliveries=1,
                )
                for m in workload.messages
            ]
            batches = [inputs[i : i + args.batch] for i in range(0, len(inputs), args.batch)]
            _timed("router", len(inputs), batches, router.handle_batch, args.top, args.sort)
            with engine.connect() as conn:
                rows = conn.execute(
                    select(outbox).where(outbox.c.routing_key == "deliver.warehouse")
                ).all()
            deliveries = [
                Delivery(
                    queue="profile.warehouse",
                    body=row.body.encode(),
                    message_id=row.message_id,
                    correlation_id=row.correlation_id,
                    headers=row.headers,
                    exchange="profile.orders",
                    routing_key=row.routing_key,
                    redelivered=False,
                    content_type="application/json",
                    deliveries=1,
                )
                for row in rows
            ]
            consumer = DeliveryConsumer(
                "warehouse",
                engine,
                HttpDelivery(
                    "warehouse",
                    f"http://127.0.0.1:{port}/warehouse",
                    KeepAliveTransport(),
                    RetryPolicy(),
                ),
            )
            time.sleep(0.5)  # the sink is up
            work = [deliveries[i : i + args.batch] for i in range(0, len(deliveries), args.batch)]
            _timed("consumer", len(deliveries), work, consumer.handle_batch, args.top, args.sort)
            engine.dispose()
    finally:
        sink.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
