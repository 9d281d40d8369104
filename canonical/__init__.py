"""The canonical order contract shared by every orderbus process.

Connectors produce it, the router validates and routes it, consumers deliver it.
Nothing in this package performs I/O.
"""

from canonical.envelope import Envelope
from canonical.money import KNOWN_CURRENCIES, parse_money
from canonical.order import (
    SCHEMA_VERSION,
    Address,
    CanonicalOrder,
    Customer,
    LineItem,
    OrderStatus,
)

__all__ = [
    "KNOWN_CURRENCIES",
    "SCHEMA_VERSION",
    "Address",
    "CanonicalOrder",
    "Customer",
    "Envelope",
    "LineItem",
    "OrderStatus",
    "parse_money",
]
