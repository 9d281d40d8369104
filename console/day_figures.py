"""The dashboard's figures of a day, its settled hours read once.

The dashboard shows today and asks again every few seconds. Of its
figures, three are of rows written once, at the time they are counted by:
the orders received (by their creation), the deliveries and their latencies
(by the delivery's time). Once an hour of the day has ended, and ``SETTLE``
more has passed (a consumer's batch commits its deliveries together, after
the last of them: a batch slowed by a system that does not answer commits
rows timed minutes before), its figures do not change, so
:class:`DayFigures` reads each such hour once and a refresh reads only the
last two hours at most: a day of 30,000 deliveries is read in full once a
process, then an hour or two at a time.

The latencies are kept as a count of each whole millisecond (``inbox.latency_ms``
is whole milliseconds), so the median and the 95th percentile of the day are
exact, not estimated from buckets.

Dead letters are not kept here: a dead letter that fails again takes its new
reason, so an hour's causes can change (and they are few: read each time).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from console import figures

# a transaction may commit this long after the time it wrote (a batch of
# deliveries to a system that times out: each try 5 s, four tries a delivery)
SETTLE = timedelta(hours=1)
# the days (and time zones) remembered at once: today's, for each zone in use
REMEMBERED = 4


@dataclass
class Part:
    """The figures of one stretch of a day."""

    by_hour: dict[str, list[int]] = field(default_factory=dict)  # channel -> 24 counts
    delivered: int = 0
    latency_ms: dict[str, Counter[int]] = field(default_factory=dict)  # system -> ms -> count

    def plus(self, other: Part) -> Part:
        by_hour = {c: list(v) for c, v in self.by_hour.items()}
        for channel, counts in other.by_hour.items():
            mine = by_hour.setdefault(channel, [0] * 24)
            for hour, count in enumerate(counts):
                mine[hour] += count
        latency = {s: Counter(v) for s, v in self.latency_ms.items()}
        for system, values in other.latency_ms.items():
            latency.setdefault(system, Counter()).update(values)
        return Part(dict(sorted(by_hour.items())), self.delivered + other.delivered, latency)

    def latency(self) -> list[figures.Latency]:
        return [
            _percentiles(system, counts)
            for system, counts in sorted(self.latency_ms.items())
            if counts
        ]


def read_part(conn: Connection, start: datetime, end: datetime, zone: ZoneInfo) -> Part:
    if end <= start:
        return Part()
    delivered, latency_ms = figures.deliveries(conn, start, end)
    return Part(figures.orders_by_hour(conn, start, end, zone), delivered, latency_ms)


def _percentiles(system: str, counts: Counter[int]) -> figures.Latency:
    """The median (the mean of the two middle values when their number is
    even) and the 95th percentile (the value at rank ceil(0.95 n)), in
    seconds."""
    n = sum(counts.values())
    p95 = figures.p95_rank(n)
    ranks = {(n + 1) // 2, n // 2 + 1, p95}
    at: dict[int, int] = {}
    seen = 0
    for ms in sorted(counts):
        seen += counts[ms]
        for rank in [r for r in ranks if r <= seen]:
            at[rank] = ms
            ranks.discard(rank)
        if not ranks:
            break
    middle = (at[(n + 1) // 2] + at[n // 2 + 1]) / 2 if n % 2 == 0 else at[(n + 1) // 2]
    return figures.Latency(system, n, middle / 1000, at[p95] / 1000)


def _hour_floor(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class _Settled:
    until: datetime  # read from the day's start up to here
    part: Part


class DayFigures:
    """A day's figures, the hours settled before ``now`` remembered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled: dict[tuple[datetime, str], _Settled] = {}

    def read(
        self, conn: Connection, start: datetime, end: datetime, zone: ZoneInfo, now: datetime
    ) -> Part:
        settled_until = min(max(_hour_floor(now - SETTLE), start), end)
        key = (start, zone.key)
        with self._lock:
            known = self._settled.get(key)
        if known is None or known.until > settled_until:  # new, or the clock went back
            known = _Settled(start, Part())
        if known.until < settled_until:
            known = _Settled(
                settled_until, known.part.plus(read_part(conn, known.until, settled_until, zone))
            )
            with self._lock:
                self._settled[key] = known
                while len(self._settled) > REMEMBERED:
                    del self._settled[min(self._settled)]
        return known.part.plus(read_part(conn, settled_until, end, zone))
