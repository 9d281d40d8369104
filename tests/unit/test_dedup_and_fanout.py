from __future__ import annotations

import pytest

from canonical.order import OrderStatus as S
from router.dedup import Known, Outcome, classify, order_number
from router.fanout import targets_for
from tests.factories import order


def known(o: object) -> Known:
    return Known(o.precedence(), o.content_hash())  # type: ignore[attr-defined]


def test_first_arrival_is_new() -> None:
    assert classify(None, order())[0] is Outcome.NEW


def test_identical_arrival_is_a_duplicate() -> None:
    assert classify(known(order()), order())[0] is Outcome.DUPLICATE


def test_higher_status_is_an_update() -> None:
    created = order(status="created")
    assert classify(known(created), order(status="paid"))[0] is Outcome.UPDATE


def test_higher_version_same_status_is_an_update() -> None:
    assert classify(known(order()), order(version=2, note="leave at door"))[0] is Outcome.UPDATE


def test_lower_status_arriving_late_is_stale() -> None:
    assert classify(known(order(status="shipped")), order(status="paid"))[0] is Outcome.STALE


def test_lower_version_is_stale() -> None:
    assert classify(known(order(version=3)), order(version=2))[0] is Outcome.STALE


def test_same_revision_different_content_is_stale_first_one_stands() -> None:
    outcome, detail = classify(known(order()), order(note="changed without a new version"))
    assert outcome is Outcome.STALE
    assert "raise the version" in detail


def test_order_number_is_stable_and_distinct() -> None:
    a = order_number("web-shop", "main", "WS-1")
    assert a == order_number("web-shop", "main", "WS-1")
    assert a.startswith("OB") and len(a) == 18
    assert a != order_number("web-shop", "main", "WS-2")
    assert a != order_number("mini-program", "main", "WS-1")


def test_order_numbers_already_given_never_change() -> None:
    """Numbers are stored and shown to people: the same key, the same number
    in every release (these two as the code before this one gave them)."""
    assert order_number("web-shop", "main", "WS-1") == "OBGGKFSMA5KGOQDALQ"
    assert order_number("taobao", "店铺", "1234567890123456789") == "OBVQFKXJ2RXWH33P4U"


@pytest.mark.parametrize(
    ("status", "previous", "expected"),
    [
        (S.CREATED, None, ["notification"]),
        (S.PAID, None, ["warehouse", "finance", "notification"]),
        (S.PAID, S.CREATED, ["warehouse", "finance", "notification"]),
        (S.SHIPPED, S.PAID, ["finance", "notification"]),
        (S.CANCELLED, S.CREATED, ["notification"]),
        (S.CANCELLED, S.PAID, ["warehouse", "finance", "notification"]),
        (S.REFUNDED, S.DELIVERED, ["warehouse", "finance", "notification"]),
    ],
)
def test_fan_out_by_content(status: S, previous: S | None, expected: list[str]) -> None:
    assert targets_for(status, previous) == expected


def test_content_hash_ignores_the_order_number_the_router_assigns() -> None:
    # The router hashes the incoming order once and stores that hash for the
    # accepted copy, which differs only by its order number.
    incoming = order()
    accepted = incoming.model_copy(update={"order_number": "OBAAAAAAAAAAAAAAAA"})
    assert accepted.content_hash() == incoming.content_hash()
    assert order(note="other").content_hash() != incoming.content_hash()
