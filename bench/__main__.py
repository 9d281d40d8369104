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
    parser.add_argument(
        "--no-webhooks",
        dest="webhooks",
        action="store_false",
        help="leave out the runs where orders arrive as signed HTTP webhooks",
    )
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

    def run(
        label: str,
        n: int,
        routers: int = 1,
        rate: float | None = None,
        *,
        plain: bool = False,
        webhooks: bool = False,
    ) -> PipelineResult:
        print(f"running: {label} ...", flush=True)
        result = run_pipeline(
            AMQP,
            DATABASE,
            workload(n),
            routers=routers,
            rate=rate,
            logs=args.logs / label.replace(" ", "-").replace("/", "-"),
            settings=settings,
            plain=plain,
            webhooks=webhooks,
        )
        runs.append((label, result))
        print("  " + _row(label, result, plain_rate.get(_size(label))), flush=True)
        stages = {
            k: v for k, v in result.latency_ms.items() if not k.startswith("p") or "after" in k
        }
        print(f"  latency ms: {stages}", flush=True)
        print(f"  CPU ms per order by part: {result.cpu_ms_per_order}", flush=True)
        print(f"  PostgreSQL contention: {result.contention}", flush=True)
        return result

    plain_rate: dict[str, float] = {}  # by "N=20,000": the plain pipeline's flat-out rate
    best = plain_best = 0.0
    for n in args.orders:
        plain_rate[f"N={n:,}"] = run(f"N={n:,} plain", n, plain=True).orders_per_s
        plain_best = max(plain_best, plain_rate[f"N={n:,}"])
        best = max(best, run(f"N={n:,} orderbus", n).orders_per_s)
    scaling = args.scaling_orders
    for routers in args.routers:
        if routers == 1 and scaling in args.orders:
            continue
        best = max(
            best, run(f"N={scaling:,} orderbus {routers} routers", scaling, routers).orders_per_s
        )
    inputs_per_order = len(workload(args.latency_orders).messages) / args.latency_orders
    paced = args.latency_orders
    run(f"N={paced:,} plain paced {plain_best / 2:,.0f}/s", paced,
        rate=plain_best / 2 * inputs_per_order, plain=True)  # fmt: skip
    run(f"N={paced:,} orderbus paced {best / 2:,.0f}/s", paced,
        rate=best / 2 * inputs_per_order)  # fmt: skip
    if args.webhooks:
        hooked = run(f"N={scaling:,} orderbus webhooks", scaling, webhooks=True)
        half = hooked.orders_per_s / 2
        run(f"N={paced:,} orderbus webhooks paced {half:,.0f}/s", paced,
            rate=half * inputs_per_order, webhooks=True)  # fmt: skip

    print()
    print(_table(runs, plain_rate))
    print()
    print(_parts(runs))
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
    "| run | orders | orders/s | × plain | p50 ms | p99 ms | 202 p50 / p99 ms | "
    "CPU ms/order: own | broker | database | sink | own ÷ (broker + database) | "
    "peak RSS MB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _row(label: str, r: PipelineResult, plain: float | None) -> str:
    lat = r.latency_ms
    paced = r.rate is not None
    versus = (
        f"{r.orders_per_s / plain:.2f}" if plain and not paced and "plain" not in label else "—"
    )
    hook = f"{lat['webhook_p50']:.1f} / {lat['webhook_p99']:.1f}" if "webhook_p50" in lat else "—"
    backing = r.cpu_ms("broker", "database")
    rss = "+".join(f"{p.peak_rss_mb:.0f}" for p in r.processes if p.name != "sink")
    return (
        f"| {label} | {r.orders:,} | {r.orders_per_s:,.0f} | {versus} | "
        f"{lat.get('p50', 0):.0f} | {lat.get('p99', 0):.0f} | {hook} | "
        f"{r.own_ms:.2f} | {r.cpu_ms('broker'):.2f} | {r.cpu_ms('database'):.2f} | "
        f"{r.cpu_ms('sink'):.2f} | {r.own_ms / backing if backing else 0:.2f} | {rss} |"
    )


def _size(label: str) -> str:
    return label.split(" ", 1)[0]


def _table(runs: list[tuple[str, PipelineResult]], plain: dict[str, float]) -> str:
    rows = [_row(label, r, plain.get(_size(label))) for label, r in runs]
    return "\n".join([HEADER, *rows])


def _parts(runs: list[tuple[str, PipelineResult]]) -> str:
    """CPU ms per order of each part (process/thread), one column per run."""
    names = sorted({k for _, r in runs for k in r.cpu_ms_per_order})
    lines = [
        "| CPU ms per order | " + " | ".join(label for label, _ in runs) + " |",
        "|---" * (len(runs) + 1) + "|",
    ]
    for name in names:
        cells = " | ".join(f"{r.cpu_ms_per_order.get(name, 0):.2f}" for _, r in runs)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
