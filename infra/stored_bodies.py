"""Bodies stored as text: UTF-8 as it is, anything else as base64, with the
encoding beside it so the exact bytes come back (dead letters, refused requests)."""

from __future__ import annotations

import base64
import binascii


def encode_body(body: bytes) -> tuple[str, str]:
    """Text for the database: UTF-8 as is, anything else (or NUL) as base64."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"
    if "\x00" in text:
        return base64.b64encode(body).decode("ascii"), "base64"
    return text, "utf-8"


def decode_body(text: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError("stored body is not valid base64") from exc
    return text.encode("utf-8")
