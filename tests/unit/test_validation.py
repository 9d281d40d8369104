from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from canonical.errors import ValidationFailed
from canonical.validation import _places, _too_precise, validate, violations
from tests.factories import order


def codes(**changes: object) -> set[str]:
    return {v.code for v in violations(order(**changes))}


def test_a_good_order_has_no_violations() -> None:
    assert violations(order()) == []
    validate(order())


@pytest.mark.parametrize(
    "phone",
    [
        "13800138000",
        "+8613800138000",
        "86 13800138000",
        "19912345678",
        "0571-87654321",  # a landline with its area code
        "010 1234 5678",
        "17012345678-1234",  # a platform's privacy number with its extension
        "17012345678转1234",
        "+1 480-386-0930 ext. 73824",  # another country's, with its + code
    ],
)
def test_the_phone_forms_platforms_send_are_accepted(phone: str) -> None:
    assert "invalid_phone" not in codes(customer={"phone": phone})


@pytest.mark.parametrize(
    "phone",
    ["1380013800", "12800138000", "010-1234", "abc", "(480) 386-0930", "1" * 60, "+1 555"],
)
def test_what_is_no_phone_is_refused_with_what_is_expected(phone: str) -> None:
    found = [v for v in violations(order(customer={"phone": phone})) if v.code == "invalid_phone"]
    assert len(found) == 1
    assert "0571-87654321" in found[0].message and "17012345678-1234" in found[0].message


def test_a_number_of_the_orders_own_country_needs_no_plus() -> None:
    us = {"country": "US", "province": "AZ", "city": "Phoenix", "street": "1 Main St"}
    assert "invalid_phone" not in codes(customer={"phone": "(480) 386-0930"}, shipping_address=us)


def test_contact_is_required() -> None:
    assert "missing_contact" in codes(customer={"phone": None, "email": None})


def test_incomplete_address_names_each_missing_part() -> None:
    found = violations(order(shipping_address={"district": None, "street": None}))
    fields = {v.field for v in found if v.code == "incomplete_address"}
    assert fields == {"shipping_address.district", "shipping_address.street"}


def test_quantity_must_be_positive() -> None:
    o = order(items=[{"sku": "S", "quantity": 0, "unit_price": "1.00"}], total="6.50")
    found = {(v.code, v.field) for v in violations(o)}
    assert ("non_positive_quantity", "items[0].quantity") in found


def test_totals_must_add_up() -> None:
    found = violations(order(total="31.00"))
    assert [v.code for v in found] == ["total_mismatch"]
    assert "30.50" in found[0].message


def test_unknown_currency_is_refused() -> None:
    assert "unknown_currency" in codes(currency="RMB")


def test_more_decimals_than_the_currency_has() -> None:
    assert "too_many_decimals" in codes(currency="JPY")


def test_validate_raises_with_every_reason() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate(order(total="1.00", customer={"phone": "123"}))
    assert {v.code for v in info.value.violations} == {"total_mismatch", "invalid_phone"}
    assert info.value.reason == "validation_failed"


@pytest.mark.parametrize("phone", ["(555) 555-5555", "555-625-1199", "+1 415.555.0100"])
def test_written_forms_of_foreign_numbers_are_accepted(phone: str) -> None:
    us = {"country": "US", "city": "San Francisco", "street": "969 Market"}
    assert "invalid_phone" not in codes(customer={"phone": phone}, shipping_address=us)


@pytest.mark.parametrize("phone", ["call me", "(", "+", "12"])
def test_foreign_numbers_that_are_not_numbers_are_refused(phone: str) -> None:
    us = {"country": "US", "city": "San Francisco", "street": "969 Market"}
    assert "invalid_phone" in codes(customer={"phone": phone}, shipping_address=us)


def test_tax_counts_towards_the_total() -> None:
    # order(): lines 25.00 + shipping 6.00 - discount 0.50 = 30.50; with 3.05 tax, 33.55
    assert "total_mismatch" not in codes(tax="3.05", total="33.55")
    assert "total_mismatch" in codes(tax="3.05", total="30.50")


def test_a_plain_mainland_mobile_reads_as_libphonenumber_reads_it() -> None:
    """The fast path for an 11-digit mainland number (one libphonenumber
    lookup per 5-digit prefix) gives what the full parse gives, number for
    number: kind, E.164, and whether it exists at all; for numbers under
    every 5-digit prefix from 130 to 199 (libphonenumber's ranges differ by
    the 5th digit at most: 1740[0-5] is a mobile, 17406… is not)."""
    import random

    from canonical.phones import _parsed, read_phone

    rng = random.Random(20261206)
    numbers = [
        f"{prefix}{rng.randint(0, 999_999):06d}" for prefix in range(13000, 20000) for _ in "abcd"
    ]
    differ = [n for n in numbers if read_phone(n) != _parsed(n, "CN")]
    assert differ == []
    kinds = {p.kind if p else None for p in map(read_phone, numbers)}
    assert {"mobile", None} <= kinds  # both answers were exercised


@settings(max_examples=500, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=12),
)
@example(Decimal("34661085290113897079789.570588"), 5)  # 29 digits: past the context's 28
@example(Decimal("0.000"), 0)
@example(Decimal("1.50"), 1)
@example(Decimal("1E+3"), 0)
def test_too_precise_is_more_places_than_the_currency_has(amount: Decimal, places: int) -> None:
    """The quick check (does rounding change it?) says what counting the
    places, trailing zeros aside, says: for any finite amount, huge or tiny."""
    assert _too_precise(amount, places) == (_places(amount) > places)
