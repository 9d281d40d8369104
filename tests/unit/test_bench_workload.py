"""The benchmark's workload: deterministic, realistic, and what it claims to be."""

from __future__ import annotations

from bench.workload import CHANNELS, Workload
from canonical.errors import ValidationFailed
from canonical.order import CanonicalOrder
from canonical.validation import validate


def test_same_seed_same_workload_and_another_seed_another() -> None:
    a, b = Workload(300).build(), Workload(300).build()
    assert [(m.message_id, m.body) for m in a.messages] == [
        (m.message_id, m.body) for m in b.messages
    ]
    c = Workload(300, seed=7).build()
    assert [m.body for m in c.messages] != [m.body for m in a.messages]


def test_orders_are_about_1_5_kb_from_every_channel_with_the_stated_rates() -> None:
    w = Workload(2000, duplicate_rate=0.05, invalid_rate=0.02).build()
    sizes = [len(m.body) for m in w.messages]
    assert 1300 <= sum(sizes) / len(sizes) <= 1700
    assert {m.channel for m in w.messages} == set(CHANNELS)
    assert len(w.messages) == 2000 + 100  # the duplicates: new message ids, same orders
    assert len({m.message_id for m in w.messages}) == len(w.messages)
    invalid = 0
    for m in {m.external_id: m for m in w.messages}.values():
        order = CanonicalOrder.model_validate_json(m.body)
        try:
            validate(order)
            assert m.valid
        except ValidationFailed:
            assert not m.valid
            invalid += 1
    assert 20 <= invalid <= 60  # about 2% of 2,000
    assert w.unique_valid == 2000 - invalid
    assert {t: len(ids) for t, ids in w.expected.items()} == {
        "warehouse": w.unique_valid,
        "finance": w.unique_valid,
        "notification": w.unique_valid,
    }


def test_the_plain_pipeline_refuses_the_same_orders_as_orderbus() -> None:
    """The straightforward pipeline does the same job: its sum check agrees
    with orderbus's validation on every order of the workload."""
    import json

    from bench.baseline import adds_up

    w = Workload(500, duplicate_rate=0.0, invalid_rate=0.05).build()
    agreed = [adds_up(json.loads(m.body)) == m.valid for m in w.messages]
    assert all(agreed) and not all(m.valid for m in w.messages)


def test_the_cpu_of_this_process_is_split_by_thread_name() -> None:
    import os
    import threading
    import time

    from bench.pipeline import _thread_ticks
    from infra.os_threads import name_this_thread

    done, read = threading.Event(), threading.Event()

    def busy() -> None:
        name_this_thread("ob-spin")
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        done.set()
        read.wait()  # alive (in /proc) until its ticks are read

    thread = threading.Thread(target=busy)
    thread.start()
    done.wait()
    ticks = _thread_ticks(os.getpid())
    read.set()
    thread.join()
    assert ticks.get("spin", 0) > 0 and "other" in ticks
