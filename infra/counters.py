"""Counters the metrics endpoint reads without counting the history: each
process adds to its counts in memory as it works (after its commit) and
writes them every few seconds to ``metric_counts``, one row per metric,
labels and process; a scrape sums those rows, a handful however many
orders there are (``python -m bench.history`` measured the old count of
every arrival and delivery at each scrape: O(history)).

Like any Prometheus client's counters, what a process counted in its last
seconds before a kill -9 is not written; the orders themselves are never
affected. Migration 0028 started the counts from the rows already there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, select

from infra.database import dialect_insert, translate_db_errors
from infra.tables import metric_counts

log = logging.getLogger(__name__)

ARRIVALS = "arrivals"  # labels: channel, outcome
LATENCY = "delivery_latency"  # labels: consumer, bucket ("0.05" … "300.0", "+Inf", "sum")
# the latency histogram's upper bounds, in seconds
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
SEPARATOR = "\x1f"


def labels_key(labels: Iterable[str]) -> str:
    return SEPARATOR.join(labels)


class Counters:
    """This process's counts not yet written."""

    def __init__(self, engine: Engine, instance: str | None = None) -> None:
        self.engine = engine
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self._pending: defaultdict[tuple[str, str], float] = defaultdict(float)
        # consumer -> deliveries by the first bucket each fits (the last
        # place: past every bound), then the seconds' sum; made cumulative
        # when written (one increment a delivery instead of one a bucket)
        self._latency: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def add(self, metric: str, labels: Iterable[str], value: float = 1.0) -> None:
        with self._lock:
            self._pending[(metric, labels_key(labels))] += value

    def observe_latency(self, consumer: str, seconds: float) -> None:
        """One delivery, ``seconds`` after its revision arrived at the router."""
        seconds = max(seconds, 0.0)
        first = bisect_left(BUCKETS, seconds)  # seconds <= BUCKETS[first]
        with self._lock:
            counts = self._latency.get(consumer)
            if counts is None:
                counts = self._latency[consumer] = [0.0] * (len(BUCKETS) + 2)
            counts[first] += 1
            counts[-1] += seconds

    def _fold_latency(self) -> None:
        """The latencies observed, into the pending counts: each bucket
        counts every delivery that fits it (Prometheus's cumulative buckets)."""
        for consumer, counts in self._latency.items():
            fitted = 0.0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=False):
                fitted += count
                if fitted:
                    self._pending[(LATENCY, labels_key((consumer, bound)))] += fitted
            self._pending[(LATENCY, labels_key((consumer, "sum")))] += counts[-1]
        self._latency = {}

    def flush(self) -> None:
        """Add what was counted to this process's rows; kept for the next
        flush when the database does not answer."""
        with self._lock:
            self._fold_latency()
            pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return
        rows = [
            {"metric": m, "labels": labels, "instance": self.instance, "value": v}
            for (m, labels), v in sorted(pending.items())
        ]
        try:
            with translate_db_errors(), self.engine.begin() as conn:
                statement: Any = dialect_insert(conn, metric_counts)
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["metric", "labels", "instance"],
                        set_={"value": metric_counts.c.value + statement.excluded.value},
                    ),
                    rows,
                )
        except Exception as exc:
            with self._lock:
                for key, value in pending.items():
                    self._pending[key] += value
            log.warning("counters not written yet (%s); kept for the next try", exc)

    def run(self, stop: threading.Event, interval: float = 5.0) -> None:
        while not stop.wait(interval):
            self.flush()
        self.flush()


def totals(conn: Connection, metric: str) -> dict[tuple[str, ...], float]:
    """Every process's counts of ``metric``, summed, by labels."""
    found: defaultdict[tuple[str, ...], float] = defaultdict(float)
    c = metric_counts.c
    for labels, value in conn.execute(select(c.labels, c.value).where(c.metric == metric)):
        found[tuple(labels.split(SEPARATOR))] += value
    return dict(found)
