"""The metrics' counts (infra/counters.py): each process adds in memory and
writes its own rows; a scrape sums every process's; a database that does not
answer keeps the counts for the next write."""

from __future__ import annotations

import socket

from sqlalchemy import Engine

from infra.counters import ARRIVALS, LATENCY, Counters, totals
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
