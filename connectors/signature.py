"""orderbus's own webhook signature (used by the generic JSON connector).

The sender computes ``HMAC-SHA256(secret, f"{timestamp}." + raw_body)`` and sends

    X-Orderbus-Timestamp: 1764000000            (Unix seconds)
    X-Orderbus-Signature: v1=<hex digest>       (several "v1=" values, space-separated,
                                                 while a secret is being rotated)

The timestamp is inside the MAC, so an old request cannot be replayed with a
fresh timestamp; requests more than ``tolerance`` seconds old or in the future
are refused. Comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Orderbus-Timestamp"
SIGNATURE_HEADER = "X-Orderbus-Signature"
SCHEME = "v1"


class SignatureError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    secrets: Sequence[str],
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance: int,
) -> None:
    """Raise SignatureError unless one of ``secrets`` signed this body recently."""
    if not secrets:
        raise SignatureError("no_secret", "no signing secret is configured for this channel")
    if not timestamp_header or not signature_header:
        raise SignatureError(
            "missing_signature", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required"
        )
    stamp = timestamp_header.strip()
    # Unix seconds: ASCII digits, at most 12 (a longer number would overflow the
    # arithmetic below, and means nothing a sender could honestly send).
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise SignatureError("bad_timestamp", f"{TIMESTAMP_HEADER} must be Unix seconds")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            "stale_timestamp",
            f"timestamp is {int(now - timestamp)}s away from now; the limit is {tolerance}s",
        )
    offered = [
        part.split("=", 1)[1]
        for part in signature_header.replace(",", " ").split()
        if part.startswith(f"{SCHEME}=")
    ]
    if not offered:
        raise SignatureError("missing_signature", f"{SIGNATURE_HEADER} has no {SCHEME}= value")
    expected = [sign(secret, timestamp, body).split("=", 1)[1] for secret in secrets]
    # Compare every pair, so timing does not reveal which one matched.
    matched = False
    for candidate in offered:
        for good in expected:
            matched |= hmac.compare_digest(candidate.encode(), good.encode())
    if not matched:
        raise SignatureError("bad_signature", "the signature does not match the body")
