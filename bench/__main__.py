"""``python -m bench``: the broker's limit and orderbus end to end, in one run.

Prints a Markdown table and writes the figures as JSON. Needs the local
RabbitMQ (with rabbitmqctl, for a vhost per run) and PostgreSQL; their URLs
come from ORDERBUS_TEST_AMQP_URL / ORDERBUS_TEST_DATABASE_URL when set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.amqp import broker_limit
from bench.pipeline import PipelineResult, run_pipeline
from bench.workload import Workload
from infra.settings import TARGETS

AMQP = os.environ.get("ORDERBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
DATABASE = os.environ.get(
    "ORDERBUS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MESSAGES_PER_ORDER = 1 + len(TARGETS)  # the input, then one per fan-out target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--orders", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--routers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scaling-orders", type=int, default=20_000)
    parser.add_argument("--latency-orders", type=int, default=10_000)
    parser.add_argument("--limit-messages", type=int, default=50_000)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--invalid", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=20261111)
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--logs", type=Path, default=Path("bench-logs"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ORDERBUS_X=VALUE",
        help="a setting for orderbus's processes (repeatable), e.g. ORDERBUS_BATCH_LINGER_MS=1",
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    if any(not key.startswith("ORDERBUS_") for key in settings):
        parser.error("--set takes ORDERBUS_NAME=VALUE")

    def workload(n: int) -> Workload:
        return Workload(n, args.duplicates, args.invalid, args.seed).build()

    sample = workload(100)
    body_bytes = sum(len(m.body) for m in sample.messages) // len(sample.messages)
    print(
        f"# orderbus benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
        f"{os.cpu_count()} cores; orders of ~{body_bytes} B)"
        + (f"; settings {settings}" if settings else ""),
        flush=True,
    )

    # The best of two runs: the limit is what the broker can do, and one run
    # on a small shared machine can catch it busy.
    limit = max(broker_limit(AMQP, args.limit_messages, sample.messages[0].body) for _ in "ab")
    ceiling = limit / MESSAGES_PER_ORDER
    print(
        f"broker limit: {limit:,.0f} messages/s (persistent, confirmed, acked, one quorum "
        f"queue) -> ceiling {ceiling:,.0f} orders/s ({MESSAGES_PER_ORDER} messages per order)",
        flush=True,
    )

    runs: list[tuple[str, PipelineResult]] = []

    def run(label: str, n: int, routers: int, rate: float | None = None) -> PipelineResult:
        print(f"running: {label} ...", flush=True)
        result = run_pipeline(
            AMQP,
            DATABASE,
            workload(n),
            routers=routers,
            rate=rate,
            logs=args.logs / label.replace(" ", "-"),
            settings=settings,
        )
        runs.append((label, result))
        print("  " + _row(label, result, ceiling), flush=True)
        stages = {k: v for k, v in result.latency_ms.items() if k.endswith("_p50")}
        print(f"  median ms per stage: {stages}", flush=True)
        print(
            f"  machine busy {result.machine_busy:.0%}; CPU s: broker {result.broker_cpu_s}, "
            f"database {result.database_cpu_s}, orderbus and sink "
            f"{sum(p.cpu_s for p in result.processes):.1f}, benchmark driver "
            f"{result.driver_cpu_s}",
            flush=True,
        )
        return result

    best = 0.0
    for n in args.orders:
        best = max(best, run(f"N={n:,} 1 router", n, 1).orders_per_s)
    for routers in args.routers:
        if routers == 1 and args.scaling_orders in args.orders:
            continue
        result = run(f"N={args.scaling_orders:,} {routers} routers", args.scaling_orders, routers)
        best = max(best, result.orders_per_s)
    # Latency at half the best throughput measured, paced by the publisher.
    half = best / 2
    inputs_per_order = len(workload(args.latency_orders).messages) / args.latency_orders
    run(
        f"N={args.latency_orders:,} paced {half:,.0f}/s",
        args.latency_orders,
        1,
        rate=half * inputs_per_order,
    )

    print()
    print(_table(runs, ceiling))
    args.json.write_text(
        json.dumps(
            {
                "broker_limit_msgs_per_s": round(limit),
                "ceiling_orders_per_s": round(ceiling),
                "settings": settings,
                "runs": [{"label": label, **asdict(r)} for label, r in runs],
            },
            indent=2,
        )
    )
    print(f"\nfigures written to {args.json}")
    return 0


HEADER = (
    "| run | orders | orders/s | / ceiling | p50 ms | p95 ms | p99 ms | "
    "CPU s (router / consumers / sink) | peak RSS MB (router / consumers) |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _row(label: str, r: PipelineResult, ceiling: float) -> str:
    by = {p.name: p for p in r.processes}
    routers = [p for p in r.processes if p.name.startswith("router")]
    cpu_router = "+".join(f"{p.cpu_s:.0f}" for p in routers)
    rss_router = "+".join(f"{p.peak_rss_mb:.0f}" for p in routers)
    lat = r.latency_ms
    return (
        f"| {label} | {r.orders:,} | {r.orders_per_s:,.0f} | {r.orders_per_s / ceiling:.0%} | "
        f"{lat.get('p50', 0):.0f} | {lat.get('p95', 0):.0f} | {lat.get('p99', 0):.0f} | "
        f"{cpu_router} / {by['consumers'].cpu_s:.0f} / {by['sink'].cpu_s:.0f} | "
        f"{rss_router} / {by['consumers'].peak_rss_mb:.0f} |"
    )


def _table(runs: list[tuple[str, PipelineResult]], ceiling: float) -> str:
    return "\n".join([HEADER, *(_row(label, r, ceiling) for label, r in runs)])


if __name__ == "__main__":
    sys.exit(main())
