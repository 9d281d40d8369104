"""Money: exact decimals, serialised as strings, always with a currency."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

# ISO 4217 codes the channels we serve settle in, with their minor units.
# A currency outside this table is rejected by validation ("unknown_currency"),
# so a typo such as "RMB" never reaches finance.
KNOWN_CURRENCIES: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "MOP": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "KRW": 0,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
}


MAX_MAGNITUDE = 14  # below 10^15 of any currency unit
MAX_PLACES = 8


def parse_money(value: Any) -> Decimal:
    """Turn a wire value into an exact Decimal.

    Strings and ints are exact. A float is refused: it has already lost
    precision before it reached us (0.1 + 0.2 != 0.3), so the sender must
    send a string.
    """
    text = None
    if type(value) is str:  # what JSON brings, first
        text = value.strip()
        try:
            result = Decimal(text)
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal amount: {value!r}") from exc
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError("money must be a decimal string, not a boolean")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        return parse_money(str(value))  # a str subclass, as the str it is
    elif isinstance(value, float):
        raise ValueError("money must be sent as a decimal string, not a JSON float")
    else:
        raise ValueError(f"not a decimal amount: {value!r}")
    if not result.is_finite():
        raise ValueError("money must be a finite amount")
    if result != 0 and result.adjusted() > MAX_MAGNITUDE:
        raise ValueError(f"amount {value!r} is implausibly large")
    if _places_written(text, result) > MAX_PLACES:
        raise ValueError(f"amount {value!r} has more than {MAX_PLACES} decimal places")
    return result


def _places_written(text: str | None, amount: Decimal) -> int:
    """The decimal places as written, trailing zeros included ("1.50": 2):
    counted in the text when it is plain digits and a point (a third of the
    cost of taking the amount apart), else from the amount's exponent."""
    if text is not None and not _NOT_PLAIN.search(text):
        return len(text.partition(".")[2])
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


# an exponent or a digit separator: the places are not simply the digits after the point
_NOT_PLAIN = re.compile(r"[eE_]")


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (half up, as Chinese invoices do)."""
    return amount.quantize(unit_of(KNOWN_CURRENCIES.get(currency, 2)), rounding=ROUND_HALF_UP)


# the smallest unit of each number of places: 1, 0.1, 0.01, ... (made once)
_UNITS = tuple(Decimal(1).scaleb(-places) for places in range(MAX_PLACES + 1))


def unit_of(places: int) -> Decimal:
    """The smallest amount with ``places`` decimal places (2: 0.01)."""
    return _UNITS[places] if 0 <= places <= MAX_PLACES else Decimal(1).scaleb(-places)


def money_to_str(value: Decimal) -> str:
    return format(value, "f")


Money = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(money_to_str, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["199.00"]}),
]
