"""canonical.json_bytes writes what the standard library writes, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canonical.json_bytes import compact_text, sorted_compact
from canonical.order import CanonicalOrder, content_hash_of, wire_of
from tests.factories import order as make_order

# What an order's dump holds: no floats (money is a decimal string).
scalars = st.none() | st.booleans() | st.integers() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def standard_sorted(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


@settings(max_examples=400)
@given(values)
def test_sorted_compact_is_the_standard_librarys_bytes(value: Any) -> None:
    try:
        expected = standard_sorted(value)
    except UnicodeEncodeError:  # a lone surrogate: both refuse it alike
        with pytest.raises(UnicodeEncodeError):
            sorted_compact(value)
        return
    assert sorted_compact(value) == expected


@settings(max_examples=200)
@given(values)
def test_compact_text_reads_back_as_the_value(value: Any) -> None:
    assert json.loads(compact_text(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        2**64,  # past orjson's integers
        {"nested": [-(2**70), 1]},
        {1: "a", "b": 2},  # a key that is not a string: json writes it as one
        '\x00\x1f\x7f\u2028\u2029"\\/',
        "订单 🚚 ä",
    ],
)
def test_what_orjson_refuses_or_escapes_differently_still_matches(value: Any) -> None:
    if isinstance(value, dict) and 1 in value:
        # json sorts after turning keys to strings; mixing types fails in both
        with pytest.raises(TypeError):
            standard_sorted(value)
        with pytest.raises(TypeError):
            sorted_compact(value)
        assert json.loads(compact_text(value)) == {"1": "a", "b": 2}
        return
    assert sorted_compact(value) == standard_sorted(value)
    assert json.loads(compact_text(value)) == value


def test_an_orders_wire_and_hash_are_unchanged() -> None:
    order = make_order()
    dumped = order.model_dump(mode="json")
    assert wire_of(dumped) == standard_sorted(dumped)
    assert CanonicalOrder.from_wire(order.to_wire()) == order
    assert content_hash_of(dumped) == order.content_hash()
