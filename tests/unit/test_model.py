from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from canonical.envelope import Envelope, EnvelopeError
from canonical.money import parse_money, quantize
from canonical.order import CanonicalOrder, OrderStatus, json_schema
from tests.factories import order, order_dict


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
