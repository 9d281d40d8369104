"""``python -m bench.ingest``: what keeping the platform's own order (原始单,
infra/raw_payloads.py) costs a webhook request.

The ingest application runs in this process (FastAPI through its test
client: the HTTP framework's cost is in both figures), with a publisher that
confirms at once, so the figures are the ingest's own work: read, check the
signature, read the order, publish, and (the difference) one INSERT of the
body into PostgreSQL. Each run has a schema of its own. Prints a Markdown
table: per request, the median and 95th percentile, with and without the copy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from bench.pipeline import private_schema
from bench.webhooks import signed_headers
from bench.workload import Workload
from connectors.ingest_app import IngestDeps, create_ingest_app
from infra import raw_payloads
from infra.database import make_engine
from infra.messages import OutgoingMessage
from infra.settings import Settings
from infra.topology import build_topology

DATABASE = os.environ.get(
    "ORDERBUS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SECRET = "bench-ingest-secret"  # noqa: S105 - a benchmark's own channel


class ConfirmedAtOnce:
    """A publisher whose broker confirms every message at once."""

    def publish(self, message: OutgoingMessage) -> None:
        return None

    def publish_many(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
        return [None] * len(messages)


def _bodies(count: int, seed: int) -> list[tuple[str, bytes]]:
    """(channel, signed body) of ``count`` valid orders of the benchmark's workload."""
    built = Workload(count, 0.0, 0.0, seed).build()
    return [(message.channel, message.body) for message in built.messages]


def _run(url: str, bodies: list[tuple[str, bytes]], keep: bool) -> list[float]:
    channels = sorted({channel for channel, _ in bodies})
    settings = Settings(namespace="bench", channel_secrets={c: [SECRET] for c in channels})
    engine = make_engine(url)
    deps = IngestDeps(settings, engine, ConfirmedAtOnce(), build_topology(settings))  # type: ignore[arg-type]
    original: Callable[..., Any] = raw_payloads.keep
    if not keep:  # the ingest calls raw_payloads.keep: a no-op for the baseline
        raw_payloads.keep = lambda *args, **kwargs: None
    times = []
    try:
        with TestClient(create_ingest_app(deps)) as client:
            for channel, body in bodies:
                headers = signed_headers(SECRET, body)
                started = time.perf_counter()
                answer = client.post(f"/ingest/{channel}", content=body, headers=headers)
                times.append(time.perf_counter() - started)
                if answer.status_code != 202:
                    raise SystemExit(f"{answer.status_code}: {answer.text}")
    finally:
        raw_payloads.keep = original
        engine.dispose()
    return times


def _row(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[int(len(ms) * 0.95) - 1]
    rate = len(ms) / sum(times)
    return f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {p95:.2f} | {rate:.0f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args(argv)
    bodies = _bodies(args.requests, args.seed)
    size = sum(len(b) for _, b in bodies) // len(bodies)
    results: dict[bool, list[float]] = {}
    with private_schema(DATABASE, "bench_ingest") as url:
        _run(url, bodies[:200], keep=True)  # warm up (imports, connections, plans)
        for keep in (False, True, False, True):
            results.setdefault(keep, []).extend(_run(url, bodies, keep))
    print(f"{len(bodies)} signed webhook requests of {size} bytes each, one process, PostgreSQL\n")
    print("| ingest | requests | median ms | p95 ms | requests/s |")
    print("|---|---|---|---|---|")
    print(_row("without keeping the body", results[False]))
    print(_row("keeping the body (原始单)", results[True]))
    extra = statistics.median(results[True]) - statistics.median(results[False])
    print(f"\nthe copy costs {extra * 1000:.2f} ms per request at the median")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
