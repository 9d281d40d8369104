"""Prometheus metrics, read from the database at each scrape (and the queue
depths from the broker), so they are the same whichever process serves them
and however many routers and consumers run.

- ``orderbus_arrivals_total{channel,outcome}``: messages the router recorded:
  received = the sum; accepted = ``new`` + ``update``; ``duplicate``,
  ``stale``, ``held``.
- ``orderbus_rejected_requests_total{channel,reason}``: inputs the ingest or
  an importer refused (and requests it answered but ignored: reason ``ignored``).
- ``orderbus_dead_letters{queue,reason,status}``: dead letters now.
- ``orderbus_delivery_latency_seconds{consumer}``: histogram of the time from
  a revision's arrival at the router to its delivery to each system.
- ``orderbus_outbox_unpublished`` and ``orderbus_outbox_lag_seconds``: rows
  the relay has not published yet, and the age of the oldest.
- ``orderbus_queue_depth{queue}``: messages waiting in each queue.

The arrivals and the latency histogram are the counts the routers and
consumers keep (infra/counters.py: each process writes its own every few
seconds; a scrape sums a handful of rows); refused requests and dead letters
are counted in their tables, which retention keeps small. A scrape's cost
does not grow with the order history (``python -m bench.history``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import ColumnElement, Connection, Engine, Select, func, select

from infra import counters, heartbeats
from infra.database import translate_db_errors
from infra.tables import arrivals, dead_letters, inbox, orders, outbox, rejected_requests

log = logging.getLogger(__name__)


def delivered_revisions(*columns: Any) -> Select[Any]:
    """``columns`` of each delivery joined to the arrival of the revision it
    delivered (its new order or update): the two ends of a delivery's time."""
    i, a, o = inbox.c, arrivals.c, orders.c
    return (
        select(*columns)
        .select_from(inbox)
        .join(orders, o.order_number == i.order_number)
        .join(
            arrivals,
            (a.order_id == o.id)
            & (a.order_version == i.order_version)
            & a.outcome.in_(["new", "update"]),
        )
    )


class DatabaseCollector:
    def __init__(
        self,
        engine: Engine,
        queue_depths: Callable[[], Iterable[tuple[str, int]]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_consumers: Callable[[Iterable[str]], Iterable[tuple[str, int]]] | None = None,
    ) -> None:
        self.engine = engine
        self.queue_depths = queue_depths
        self.clock = clock
        self.queue_consumers = queue_consumers

    def collect(self) -> Iterator[Metric]:
        with translate_db_errors(), self.engine.connect() as conn:
            arrived = CounterMetricFamily(
                "orderbus_arrivals", "Messages the router recorded", labels=["channel", "outcome"]
            )
            for labels, value in sorted(counters.totals(conn, counters.ARRIVALS).items()):
                arrived.add_metric(list(labels), value)
            yield arrived
            c = rejected_requests.c
            yield self._counted(
                conn,
                CounterMetricFamily(
                    "orderbus_rejected_requests",
                    "Inputs refused or ignored at the edge",
                    labels=["channel", "reason"],
                ),
                (c.channel, c.reason),
            )
            d = dead_letters.c
            yield self._counted(
                conn,
                GaugeMetricFamily(
                    "orderbus_dead_letters", "Dead letters", labels=["queue", "reason", "status"]
                ),
                (d.queue, d.reason, d.status),
            )
            yield self._latency(conn)
            yield from self._outbox(conn)
            states = heartbeats.states(conn, self.clock())
        yield from self._components(states)
        if self.queue_depths is not None:
            yield self._queue_depths(self.queue_depths)

    def _components(self, states: list[heartbeats.ComponentState]) -> Iterator[Metric]:
        """Each component's liveness from its heartbeats, and the consumers on
        the queues its live processes consume."""
        up = GaugeMetricFamily(
            "orderbus_component_up",
            "1 while a process of the component beats",
            labels=["component"],
        )
        processes = GaugeMetricFamily(
            "orderbus_component_processes", "Live processes of the component", labels=["component"]
        )
        age = GaugeMetricFamily(
            "orderbus_component_last_beat_seconds",
            "Seconds since the component's last heartbeat",
            labels=["component"],
        )
        for state in states:
            up.add_metric([state.component], 1 if state.up else 0)
            processes.add_metric([state.component], state.live_instances)
            age.add_metric([state.component], state.last_beat_seconds)
        yield from (up, processes, age)
        queues = sorted({q for s in states if s.up for q in s.queues})
        if self.queue_consumers is None or not queues:
            return
        consumers = GaugeMetricFamily(
            "orderbus_queue_consumers", "Consumers attached to a queue", labels=["queue"]
        )
        try:
            for name, count in self.queue_consumers(queues):
                consumers.add_metric([name], count)
        except Exception as exc:  # the broker down: the other metrics still count
            log.warning("metrics: queue consumers unavailable: %s", exc)
        yield consumers

    @staticmethod
    def _counted(
        conn: Connection,
        family: CounterMetricFamily | GaugeMetricFamily,
        by: tuple[ColumnElement[Any], ...],
    ) -> Metric:
        """``family`` with one sample per group of ``by`` and its count of rows."""
        for row in conn.execute(select(*by, func.count()).group_by(*by)):
            family.add_metric([str(v) for v in row[:-1]], row[-1])
        return family

    def _outbox(self, conn: Connection) -> Iterator[Metric]:
        pending, oldest = conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.published_at.is_(None)
            )
        ).one()
        yield GaugeMetricFamily(
            "orderbus_outbox_unpublished", "Outbox rows not yet published", value=pending
        )
        lag = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            lag = max((self.clock() - oldest).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            "orderbus_outbox_lag_seconds", "Age of the oldest unpublished outbox row", value=lag
        )

    @staticmethod
    def _queue_depths(depths: Callable[[], Iterable[tuple[str, int]]]) -> Metric:
        depth = GaugeMetricFamily(
            "orderbus_queue_depth", "Messages waiting in a queue", labels=["queue"]
        )
        try:
            for name, count in depths():
                depth.add_metric([name], count)
        except Exception as exc:  # the broker down: the other metrics still count
            log.warning("metrics: queue depths unavailable: %s", exc)
        return depth

    @staticmethod
    def _latency(conn: Connection) -> Metric:
        """The deliveries' times from their revision's arrival, as the
        consumers counted them (infra/counters.py)."""
        histogram = HistogramMetricFamily(
            "orderbus_delivery_latency_seconds",
            "From a revision's arrival at the router to its delivery to a system",
            labels=["consumer"],
        )
        by_consumer: dict[str, dict[str, float]] = {}
        for (consumer, bucket), value in counters.totals(conn, counters.LATENCY).items():
            by_consumer.setdefault(consumer, {})[bucket] = value
        for consumer, values in sorted(by_consumer.items()):
            buckets = [(str(b), values.get(str(b), 0.0)) for b in counters.BUCKETS]
            buckets.append(("+Inf", values.get("+Inf", 0.0)))
            histogram.add_metric([consumer], buckets, values.get("sum", 0.0))
        return histogram


def render(collector: DatabaseCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
