"""The metrics' counts (infra/counters.py): each process adds in memory and
writes its own rows; a scrape sums every process's; a database that does not
answer keeps the counts for the next write."""

from __future__ import annotations

import socket

from sqlalchemy import Engine

from infra.counters import ARRIVALS, BUCKETS, LATENCY, Counters, totals
from infra.database import make_engine


def test_two_processes_counts_are_summed_and_written_once(sqlite_engine: Engine) -> None:
    first, second = Counters(sqlite_engine, "a:1"), Counters(sqlite_engine, "b:2")
    for _ in range(3):
        first.add(ARRIVALS, ("tmall", "new"))
    second.add(ARRIVALS, ("tmall", "new"))
    second.add(ARRIVALS, ("jd", "duplicate"))
    first.flush()
    second.flush()
    first.flush()  # nothing new: nothing added twice
    with sqlite_engine.connect() as conn:
        assert totals(conn, ARRIVALS) == {("tmall", "new"): 4, ("jd", "duplicate"): 1}


def test_latency_goes_into_every_bucket_it_fits(sqlite_engine: Engine) -> None:
    counters = Counters(sqlite_engine)
    counters.observe_latency("warehouse", 0.2)
    counters.observe_latency("warehouse", 7.0)
    counters.flush()
    with sqlite_engine.connect() as conn:
        found = totals(conn, LATENCY)
    assert ("warehouse", "0.1") not in found  # neither was that fast
    assert found[("warehouse", "0.25")] == 1 and found[("warehouse", "10.0")] == 2
    assert found[("warehouse", "+Inf")] == 2 and found[("warehouse", "sum")] == 7.2


def test_counts_wait_while_the_database_is_away(sqlite_engine: Engine) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    away = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed}/test")
    counters = Counters(away, "c:3")
    counters.add(ARRIVALS, ("youzan", "new"), 2)
    counters.flush()  # refused: kept
    counters.engine = sqlite_engine
    counters.flush()
    with sqlite_engine.connect() as conn:
        assert totals(conn, ARRIVALS) == {("youzan", "new"): 2}


def test_each_bucket_counts_the_deliveries_at_or_under_its_bound(sqlite_engine: Engine) -> None:
    counters = Counters(sqlite_engine)
    observed = [0.0, 0.05, 0.050001, 0.3, 2.5, 299.0, 300.0, 301.0, -1.0, 0.01, 0.01]
    for seconds in observed:
        counters.observe_latency("finance", seconds)
    counters.observe_latency("warehouse", 1.0)
    counters.flush()
    with sqlite_engine.connect() as conn:
        found = totals(conn, LATENCY)
    fitting = [max(s, 0.0) for s in observed]
    for bound in BUCKETS:
        expected = sum(1 for s in fitting if s <= bound)
        assert found.get(("finance", str(bound)), 0) == expected, bound
    assert found[("finance", "+Inf")] == len(observed)
    assert round(found[("finance", "sum")], 6) == round(sum(fitting), 6)
    assert found[("warehouse", "1.0")] == 1 and ("warehouse", "0.5") not in found
