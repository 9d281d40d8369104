"""Dedup by business key: how one arrival relates to what orderbus already knows.

There is no time window: the order's row in ``orders`` (unique on channel, shop,
external id) is the memory, for ever.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from canonical.order import CanonicalOrder


class Outcome(StrEnum):
    NEW = "new"  # first time orderbus sees this order: fan out
    UPDATE = "update"  # a later revision with different content: fan out again
    DUPLICATE = "duplicate"  # the same revision again: recorded, no effect
    STALE = "stale"  # an older revision arriving late: recorded, not propagated
    HELD = "held"  # a change to an order held as a suspected duplicate: recorded, not sent


@dataclass(frozen=True)
class Known:
    """What the orders table holds about an order."""

    precedence: tuple[int, int, str]
    content_hash: str


def classify(
    known: Known | None, incoming: CanonicalOrder, incoming_hash: str | None = None
) -> tuple[Outcome, str]:
    """Classify an arrival; the second value explains it to a person.

    ``incoming_hash`` is ``incoming.content_hash()`` when the caller has it.
    """
    if known is None:
        return Outcome.NEW, "first arrival"
    if incoming_hash is None:
        incoming_hash = incoming.content_hash()
    if incoming_hash == known.content_hash:
        return Outcome.DUPLICATE, "identical to the accepted revision"
    precedence = incoming.precedence()
    if precedence > known.precedence:
        return Outcome.UPDATE, "supersedes the accepted revision"
    if precedence == known.precedence:
        return (
            Outcome.STALE,
            "same status and version as the accepted revision but different content; "
            "the first one stands (the channel must raise the version)",
        )
    return Outcome.STALE, "older than the accepted revision (status or version is lower)"


def order_number(channel: str, shop: str, external_id: str) -> str:
    """The unified order number: stable for every redelivery of one order.

    ``OB`` + 16 characters of base32 over SHA-256 of the business key, so the
    same channel order always gets the same number, in any process, without a
    round trip, and numbers from different channels never collide in practice
    (80 bits).
    """
    digest = hashlib.sha256(f"{channel}\x1f{shop}\x1f{external_id}".encode()).digest()
    # 16 base32 characters are exactly the first 10 bytes' (base32 writes 5
    # bytes as 8 characters): those alone are encoded, the same characters
    return "OB" + base64.b32encode(digest[:10]).decode("ascii")
