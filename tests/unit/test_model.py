from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from canonical.envelope import Envelope, EnvelopeError
from canonical.money import MAX_MAGNITUDE, MAX_PLACES, parse_money, quantize
from canonical.order import CanonicalOrder, OrderStatus, content_hash_of, json_schema, wire_of
from tests.factories import body_of, order, order_dict


def test_money_is_decimal_and_serialised_as_string() -> None:
    o = order()
    assert o.total == Decimal("30.50")
    assert isinstance(o.items[0].unit_price, Decimal)
    wire = json.loads(o.to_wire())
    assert wire["total"] == "30.50"
    assert wire["items"][0]["unit_price"] == "10.50"
    assert wire["currency"] == "CNY"


def test_round_trip_is_exact() -> None:
    o = order(total="30.50")
    again = CanonicalOrder.from_wire(o.to_wire())
    assert again == o
    assert again.to_wire() == o.to_wire()


def test_json_float_money_is_refused() -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        CanonicalOrder.model_validate(order_dict(total=30.5))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "abc", "1e999999999999"])
def test_non_finite_or_garbage_money_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_money(value)


def test_quantize_half_up_to_minor_unit() -> None:
    assert quantize(Decimal("1.005"), "CNY") == Decimal("1.01")
    assert quantize(Decimal("100.5"), "JPY") == Decimal("101")


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        CanonicalOrder.model_validate(order_dict(placed_at="2026-11-11T00:00:01"))


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        CanonicalOrder.model_validate(order_dict(colour="red"))


def test_nul_character_is_refused() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        CanonicalOrder.model_validate(order_dict(note="a\x00b"))
    with pytest.raises(ValidationError, match="NUL"):  # from JSON too, in a short text
        CanonicalOrder.model_validate_json(body_of(order_dict(external_id="WS\u00001")))


def test_texts_longer_than_their_limit_are_refused_naming_the_limit() -> None:
    with pytest.raises(ValidationError, match="at most 2000 characters"):
        CanonicalOrder.model_validate_json(body_of(order_dict(note="长" * 2001)))
    with pytest.raises(ValidationError, match="at most 200 characters"):
        CanonicalOrder.model_validate_json(body_of(order_dict(external_id="x" * 201)))
    assert CanonicalOrder.model_validate_json(body_of(order_dict(note="长" * 2000))).note


def test_status_rank_only_grows_along_the_lifecycle() -> None:
    ranks = [
        s.rank
        for s in (OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)
    ]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4
    assert OrderStatus.CANCELLED.rank > OrderStatus.DELIVERED.rank


def test_content_hash_ignores_the_assigned_order_number() -> None:
    o = order()
    assert o.content_hash() == o.model_copy(update={"order_number": "OBX"}).content_hash()
    assert o.content_hash() != order(note="gift wrap").content_hash()


def test_json_schema_describes_money_as_string() -> None:
    schema = json_schema()
    assert schema["title"] == "CanonicalOrder"
    assert schema["properties"]["total"]["type"] == "string"
    assert "external_id" in schema["required"]


def test_envelope_round_trips_through_headers() -> None:
    env = Envelope.new("web-shop")
    child = env.caused("child-1", order_number="OB1", order_version=3, target="finance")
    back = Envelope.from_message("child-1", child.correlation_id, child.headers())
    assert back.causation_id == env.message_id
    assert back.correlation_id == env.message_id
    assert back.target == "finance" and back.order_number == "OB1" and back.order_version == 3
    assert back.received_at == env.received_at


def test_envelope_without_channel_is_an_error() -> None:
    with pytest.raises(EnvelopeError, match="channel"):
        Envelope.from_message("m1", None, {})
    with pytest.raises(EnvelopeError, match="message_id"):
        Envelope.from_message(None, None, {"x-orderbus-channel": "web"})


SHIPMENT = {"carrier": "顺丰速运", "carrier_code": "shunfeng", "tracking_number": "SF1234567890",
            "shipped_at": "2026-12-05T10:00:00+08:00"}  # fmt: skip
EVENT = {"at": "2026-12-06T08:00:00+08:00", "description": "已揽收 深圳"}
TRACKING = {"state": "in_transit", "updated_at": "2026-12-06T08:00:00+08:00", "events": [EVENT]}
PLAIN = "a540cc06671a924ee7ce6fe3e3ed6ae8da526d7df51226f3faaf888cb7f2f547"
SALE = {"id": "RF-1", "kind": "cancel", "status": "requested", "amount": "30.50"}


@pytest.mark.parametrize(
    ("changes", "stored_hash"),
    [
        ({}, PLAIN),
        ({"order_number": "OB-1"}, PLAIN),
        ({"tax": "1.50"}, "27a567c8b7b05c381e16f970fba3b1cd42302ec69e1b2ca2ca36110035728136"),
        ({"customer": {**order_dict()["customer"], "masked_phone": "138****5678"}},
         "26e6b24b3ff4e0bc26a0eb588f33e7e0571ea7d9073721bd9518a8a50cad1083"),
        ({"status": "shipped", "version": 2, "shipment": SHIPMENT, "tracking": TRACKING},
         "5882f01a328477cf58c5f99aee7df2083fe6b5351a4208eee10297bd42b1881a"),
        ({"status": "paid", "version": 2, "after_sales": [SALE]},
         "2d77175ed1612664e45a6999614e0344d927da07efb02a2b5e7a5d744e8c76e8"),
    ],
)  # fmt: skip
def test_content_hash_stays_what_was_stored(changes: dict[str, object], stored_hash: str) -> None:
    """The hashes stored with orders (computed before the router dumped each
    order once for its hash and body) still match: a copy is still a duplicate."""
    o = order(**changes)
    assert o.content_hash() == stored_hash
    assert content_hash_of(o.model_dump(mode="json")) == stored_hash
    numbered = o.model_copy(update={"order_number": "OB-9"})
    assert wire_of({**o.model_dump(mode="json"), "order_number": "OB-9"}) == numbered.to_wire()
    assert json.loads(numbered.to_wire())["order_number"] == "OB-9"


def _money_by_its_exponent(value: Any) -> Decimal:
    """parse_money as it was: the places always from the amount's exponent."""
    result = Decimal(value.strip())
    if not result.is_finite():
        raise ValueError("not finite")
    if result != 0 and result.adjusted() > MAX_MAGNITUDE:
        raise ValueError("too large")
    exponent = result.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        raise ValueError("too many places")
    return result


amount_texts = st.from_regex(
    r"\A\s?[-+]?[0-9_]{0,18}(\.[0-9_]{0,12})?([eE][-+]?[0-9]{1,2})?\s?\Z", fullmatch=True
)


@settings(max_examples=800, deadline=None)
@given(st.one_of(amount_texts, st.text(max_size=20)))
def test_money_text_is_read_as_counting_its_exponent_would(text: str) -> None:
    """Counting the places in the text (plain digits and a point) and in the
    amount's exponent (anything else) accept and refuse the same amounts."""
    try:
        expected: Decimal | None = _money_by_its_exponent(text)
    except (ValueError, ArithmeticError):
        expected = None
    try:
        got: Decimal | None = parse_money(text)
    except ValueError:
        got = None
    assert got == expected and str(got) == str(expected)
