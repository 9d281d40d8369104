"""Business validation of a canonical order.

Each broken rule becomes a :class:`Violation` with a stable ``code`` (for
machines and dashboards), the ``field`` at fault and a message a person can act
on. All rules run, so one dead letter lists everything that is wrong.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from canonical.errors import ValidationFailed, Violation
from canonical.money import KNOWN_CURRENCIES, MAX_PLACES, quantize, unit_of
from canonical.order import CanonicalOrder
from canonical.phones import EXPECTED, read_phone

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def violations(order: CanonicalOrder) -> list[Violation]:
    """Every broken rule of the order, each group of rules in its own function."""
    return [
        *_currency(order),
        *_contact(order),
        *_address(order),
        *_lines(order),
        *_amounts(order),
        *_total(order),
        *_after_sales(order),
    ]


def _currency(order: CanonicalOrder) -> list[Violation]:
    if order.currency in KNOWN_CURRENCIES:
        return []
    return [
        Violation("unknown_currency", "currency", f"currency {order.currency} is not supported")
    ]


def _contact(order: CanonicalOrder) -> list[Violation]:
    found: list[Violation] = []
    customer = order.customer
    if not customer.phone and not customer.email and not customer.masked_phone:
        # A platform that hides the buyer's number (masked_phone) keeps the
        # contact itself: the order is reached through it.
        found.append(
            Violation("missing_contact", "customer", "the customer needs a phone number or email")
        )
    if customer.phone and read_phone(customer.phone, order.shipping_address.country) is None:
        found.append(
            Violation(
                "invalid_phone",
                "customer.phone",
                f"{customer.phone!r} is not a phone number of {order.shipping_address.country}: "
                f"expected {EXPECTED}",
            )
        )
    if customer.email and not EMAIL.match(customer.email):
        found.append(
            Violation(
                "invalid_email", "customer.email", f"{customer.email!r} is not an email address"
            )
        )
    return found


def _address(order: CanonicalOrder) -> list[Violation]:
    address = order.shipping_address
    required = (
        ("province", "city", "district", "street")
        if address.country == "CN"
        else ("city", "street")
    )
    return [
        Violation(
            "incomplete_address", f"shipping_address.{part}", f"the shipping address has no {part}"
        )
        for part in required
        if not getattr(address, part)
    ]


def _lines(order: CanonicalOrder) -> list[Violation]:
    found: list[Violation] = []
    places = KNOWN_CURRENCIES.get(order.currency, 2)
    for index, item in enumerate(order.items):
        where = f"items[{index}]"
        if item.quantity <= 0:
            found.append(
                Violation(
                    "non_positive_quantity",
                    f"{where}.quantity",
                    f"SKU {item.sku}: quantity must be > 0",
                )
            )
        amounts = (
            ("unit_price", "unit price", item.unit_price),
            ("discount", "discount", item.discount),
        )
        for name, label, amount in amounts:
            if amount < 0:
                found.append(
                    Violation(
                        "negative_amount", f"{where}.{name}", f"SKU {item.sku}: negative {label}"
                    )
                )
        for name, _, amount in amounts:
            if _too_precise(amount, places):
                found.append(
                    Violation(
                        "too_many_decimals",
                        f"{where}.{name}",
                        f"{order.currency} has {places} decimal places",
                    )
                )
    return found


def _amounts(order: CanonicalOrder) -> list[Violation]:
    found: list[Violation] = []
    places = KNOWN_CURRENCIES.get(order.currency, 2)
    for name in ("shipping_fee", "order_discount", "tax", "total"):
        amount: Decimal = getattr(order, name)
        if amount < 0:
            found.append(Violation("negative_amount", name, f"{name} must not be negative"))
        if _too_precise(amount, places):
            found.append(
                Violation(
                    "too_many_decimals", name, f"{order.currency} has {places} decimal places"
                )
            )
    return found


def _total(order: CanonicalOrder) -> list[Violation]:
    expected = quantize(order.computed_total(), order.currency)
    if quantize(order.total, order.currency) == expected:
        return []
    return [
        Violation(
            "total_mismatch",
            "total",
            f"line totals + shipping + tax - discount = {expected}, "
            f"but the order says {order.total}",
        )
    ]


def validate(order: CanonicalOrder) -> None:
    found = violations(order)
    if found:
        raise ValidationFailed(found)


def _too_precise(amount: Decimal, places: int) -> bool:
    """More decimal places than ``places``, trailing zeros aside ("1.50" has
    one): the amount changes when rounded to them (a third of the cost of
    counting its places)."""
    if places > MAX_PLACES:  # no currency has so many: counted
        return _places(amount) > places
    try:
        return amount != amount.quantize(unit_of(places))
    except InvalidOperation:  # past the context's digits
        return _places(amount) > places


def _places(amount: Decimal) -> int:
    """Its decimal places, trailing zeros aside, counted on its digits as
    given: ``normalize()`` would first round it to the context's 28 digits
    (a 29-digit amount with six places counted five)."""
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    significant = len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - (len(digits) - significant)) if significant else 0


def _after_sales(order: CanonicalOrder) -> list[Violation]:
    """Each after-sale names the order's own lines, gives back no more than
    was paid (per line, its tax at most the order's; and in all), in the
    order's currency's places; a whole-order refund at most the total. Its
    amount is its lines' plus, at most, the shipping and tax given back with
    them (platforms refund the postage with the goods)."""
    found: list[Violation] = []
    places = KNOWN_CURRENCIES.get(order.currency, 2)
    paid = {item.sku: item for item in order.items}
    given_back = Decimal("0")
    for index, sale in enumerate(order.after_sales):
        where = f"after_sales[{index}]"
        amounts = [(f"{where}.amount", sale.amount)] + [
            (f"{where}.lines[{i}].amount", line.amount) for i, line in enumerate(sale.lines)
        ]
        for field, amount in amounts:
            if amount < 0:
                found.append(Violation("negative_amount", field, "must not be negative"))
            if _too_precise(amount, places):
                found.append(
                    Violation("too_many_decimals", field, f"{order.currency} has {places}")
                )
        for i, line in enumerate(sale.lines):
            item = paid.get(line.sku)
            if item is None:
                found.append(
                    Violation(
                        "unknown_line",
                        f"{where}.lines[{i}].sku",
                        f"after-sale {sale.id}: the order has no line with SKU {line.sku}",
                    )
                )
            elif line.quantity > item.quantity or line.amount > item.line_total + order.tax:
                found.append(
                    Violation(
                        "more_than_paid",
                        f"{where}.lines[{i}]",
                        f"after-sale {sale.id}: SKU {line.sku} gives back {line.quantity} "
                        f"for {line.amount}, the order has {item.quantity} for {item.line_total}",
                    )
                )
        beyond_lines = sale.amount - sale.lines_total()
        if sale.lines and not Decimal("0") <= beyond_lines <= order.shipping_fee + order.tax:
            found.append(
                Violation(
                    "after_sale_mismatch",
                    f"{where}.amount",
                    f"after-sale {sale.id}: its lines add up to {sale.lines_total()}, "
                    f"it says {sale.amount} (beyond its lines, only shipping and tax "
                    f"can be given back: {order.shipping_fee + order.tax} at most)",
                )
            )
        if sale.status.takes_effect:
            given_back += sale.amount
    if given_back > order.total:
        found.append(
            Violation(
                "more_than_paid",
                "after_sales",
                f"after-sales give back {given_back}, the order's total is {order.total}",
            )
        )
    return found
