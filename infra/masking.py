"""Personal data masked for viewers: phones, emails, people's names, street
addresses. In a canonical order or a platform's payload (JSON), by field
name; in any other text, phone numbers and emails wherever they appear."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PHONE_KEYS = frozenset(
    {
        "phone",
        "mobile",
        "telephone",
        "buyer_phone",
        "receiver_phone",
        "receiver_mobile",
        "receiver_tel",
        "post_tel",
        "billing_phone",
    }
)
EMAIL_KEYS = frozenset({"email", "buyer_email", "billing_email"})
STREET_KEYS = frozenset(
    {"street", "address", "address_1", "address_2", "receiver_address", "delivery_address"}
)
PERSON_KEYS = frozenset({"receiver_name", "post_receiver", "fullname", "first_name", "last_name"})
PEOPLE = frozenset({"customer", "billing", "shipping", "consigneeInfo", "address_info"})

# Every quantifier is bounded, so the work at each position of a text is too:
# masking is linear in the text's length, whatever an attacker sends.
# Credentials, and the platforms' signatures: with a captured signed body, a
# signature is what a replay needs, so nobody reading the record gets it.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "x-shopify-access-token",
        "x-shopify-hmac-sha256",
        "x-wc-webhook-signature",
        "event-sign",
        "x-orderbus-signature",
    }
)


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers with credentials and signatures replaced, for every reader
    (the record of a refused request keeps the rest to show what came)."""
    return {k: ("<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


MOBILE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
MAX_LOCAL = 64  # RFC 5321's limits on an address's parts
MAX_DOMAIN = 255


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_email(value: str) -> str:
    user, _, domain = value.partition("@")
    return f"{user[:1]}***@{domain}" if domain else "***"


def mask_name(value: str) -> str:
    return value[:1] + "*" * max(len(value) - 1, 1)


def mask_street(value: str) -> str:
    return value[:2] + "***" if value else value


def mask_text(text: str) -> str:
    """Phone numbers and emails in free text (a detail, a body that is not JSON)."""
    text = MOBILE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)
    return mask_emails(text)[0]


def mask_emails(text: str) -> tuple[str, int]:
    """``text`` with each e-mail address's local part masked (``a***@host.cn``),
    and the number of characters looked at: from each ``@`` at most 64 to the
    left and 255 to the right, so the work is linear in the length of ``text``
    (tests/security checks it)."""
    pieces: list[str] = []
    looked = 0
    done = 0  # text before this index is in pieces already
    at = text.find("@")
    while at != -1:
        start = at
        while start > done and at - start < MAX_LOCAL and text[start - 1] in LOCAL_CHARS:
            start -= 1
        end = at + 1
        while end < len(text) and end - at <= MAX_DOMAIN and text[end] in DOMAIN_CHARS:
            end += 1
        looked += (at - start) + (end - at) + 1
        domain = text[at + 1 : end].rstrip(".-")
        tld = domain.rsplit(".", 1)[-1] if "." in domain else ""
        if start < at and len(tld) >= 2 and tld.isalpha() and tld.isascii():
            pieces.append(text[done:start])
            pieces.append(f"{text[start]}***@{domain}")
            done = at + 1 + len(domain)
        at = text.find("@", max(at + 1, done))
    pieces.append(text[done:])
    return "".join(pieces), looked + len(text)


def mask_value(value: Any, key: str = "", parent: str = "") -> Any:
    """``value`` with personal data masked (JSON-like data, recursively)."""
    if isinstance(value, dict):
        return {k: mask_value(v, k, key) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, key, parent) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if key in PHONE_KEYS:
        return mask_phone(value)
    if key in EMAIL_KEYS:
        return mask_email(value)
    if key in STREET_KEYS:
        return mask_street(value)
    if key in PERSON_KEYS or (key == "name" and parent in PEOPLE):
        return mask_name(value)
    if key == "msg" or key == "data" or key == "response_text":
        return mask_body(value)  # a payload inside a payload (Youzan, Douyin)
    return mask_text(value)


def mask_body(body: str) -> str:
    """A message body (JSON or not) with personal data masked."""
    try:
        data = json.loads(body)
        return json.dumps(mask_value(data), ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):  # not JSON, or nested too deep to walk
        return mask_text(body)
