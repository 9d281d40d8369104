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
