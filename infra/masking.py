"""Personal data masked for viewers: phones, e-mails, people's names, street
addresses; and the credentials and signatures nobody reads.

- In JSON (a canonical order, a platform's payload, an audit entry), by the
  field's name, compared without case, ``_`` or ``-`` (``AddressLine1``,
  ``address_1``, ``fullAddress``...); a ``name`` is a person's under a
  customer, a buyer, a receiver or an address.
- In a payload inside a payload (Youzan's ``msg``, Douyin's ``data``, a
  URL-encoded form), after reading it.
- In any other text, phone numbers (mainland mobiles, landlines with an area
  code, international numbers written with ``+``), e-mails, and the values of
  personal fields written as ``"key": "value"`` (a body cut short, a diff).
- Text that cannot be read at all (a store's CSV row) is not shown to a
  viewer: :func:`viewer_body`.

Every pattern's quantifiers are bounded and the e-mail scan looks at most a
fixed number of characters around each ``@``: masking is linear in the
length of the text, whatever an attacker sends (tests/security).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


PHONE_KEYS = frozenset(
    _key(k)
    for k in (
        "phone", "mobile", "telephone", "tel", "phone_number", "mobile_phone", "contact_phone",
        "buyer_phone", "receiver_phone", "receiver_mobile", "receiver_tel", "post_tel",
        "billing_phone", "shipping_phone",
    )
)  # fmt: skip
EMAIL_KEYS = frozenset(_key(k) for k in ("email", "e_mail", "buyer_email", "billing_email"))
STREET_KEYS = frozenset(
    _key(k)
    for k in (
        "street", "address", "address1", "address2", "address3", "address_line1",
        "address_line2", "address_line3", "receiver_address", "delivery_address",
        "full_address", "detail_address", "post_addr",
    )
)  # fmt: skip
PERSON_KEYS = frozenset(
    _key(k)
    for k in (
        "receiver_name", "post_receiver", "fullname", "first_name", "last_name", "buyer_name",
        "buyer_nick", "consignee", "contact_name", "receiver", "customer_name",
    )
)  # fmt: skip
# Where a plain "name" is a person's (else it is a product's, a shop's...).
PEOPLE = frozenset(
    _key(k)
    for k in (
        "customer", "billing", "shipping", "shipping_address", "billing_address",
        "consignee_info", "address_info", "buyer_info", "receiver_info", "ship_to",
    )
)  # fmt: skip
# Secrets in a body (Youzan's sign, a token, a password): never shown.
SECRET_KEYS = frozenset(
    _key(k)
    for k in (
        "sign", "signature", "access_token", "refresh_token", "client_secret", "app_secret",
        "session", "password", "token", "secret",
    )
)  # fmt: skip
# Values that are payloads of their own (Youzan's msg, Douyin's data, ours).
PAYLOAD_KEYS = frozenset({"msg", "data", "responsetext", "body", "bodyexcerpt"})

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

MOBILE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
LANDLINE = re.compile(r"(?<![\w-])(0\d{2,3})[- ](\d{3,4})(\d{4})(?:-\d{1,6})?(?![\w])")
INTERNATIONAL = re.compile(r"(?<![\w+])\+(\d{1,3})[\d ().-]{5,20}(\d{2})(?![\w])")
# "key": "value" where the key is a personal field's (JSON cut short, a diff)
KEYED_VALUE = re.compile(
    r'"([A-Za-z][A-Za-z0-9_-]{0,40})"(\s{0,8}:\s{0,8})"((?:[^"\\]|\\.){0,300})"'
)
# Longer free text is not masked but withheld: what it holds cannot be bounded.
MAX_MASKED_TEXT = 64 * 1024
LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
MAX_LOCAL = 64  # RFC 5321's limits on an address's parts
MAX_DOMAIN = 255


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers with credentials and signatures replaced, for every reader
    (the record of a refused request keeps the rest to show what came)."""
    return {k: ("<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


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
    """Phone numbers, e-mails and personal ``"key": "value"`` pairs in free text
    (text over 64 KiB is withheld instead)."""
    if len(text) > MAX_MASKED_TEXT:
        return f"(not shown: {len(text)} characters of text)"
    text = MOBILE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)
    text = LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(3)}", text)
    text = INTERNATIONAL.sub(lambda m: f"+{m.group(1)} ****{m.group(2)}", text)
    text = KEYED_VALUE.sub(_keyed, text)
    return mask_emails(text)[0]


def _keyed(m: re.Match[str]) -> str:
    key, colon, value = m.group(1), m.group(2), m.group(3)
    masked = _by_key(_key(key), value, person=_key(key) == "name")
    return f'"{key}"{colon}"{masked}"' if masked is not None else m.group(0)


def _by_key(key: str, value: str, *, person: bool = False) -> str | None:
    """``value`` masked as the field ``key`` holds it, or None: not personal."""
    if key in SECRET_KEYS:
        return "<redacted>"
    if key in PHONE_KEYS:
        return mask_phone(value)
    if key in EMAIL_KEYS:
        return mask_email(value)
    if key in STREET_KEYS:
        return mask_street(value)
    if key in PERSON_KEYS or person:
        return mask_name(value)
    return None


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
        return {k: mask_value(v, str(k), key) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, key, parent) for v in value]
    if not isinstance(value, str) or not value:
        return value
    k = _key(key)
    masked = _by_key(k, value, person=k == "name" and _key(parent) in PEOPLE)
    if masked is not None:
        return masked
    if k in PAYLOAD_KEYS:
        return mask_body(value)  # a payload inside a payload (Youzan, Douyin, an audit)
    return mask_text(value)


def _payload(body: str) -> Any:
    """The data in a body: JSON, URL-encoded JSON, or a URL-encoded form;
    ValueError when it is none of them."""
    try:
        return json.loads(body)
    except ValueError:
        pass
    if "%" in body:
        try:
            return json.loads(unquote(body))
        except ValueError:
            pass
    pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    if not pairs:
        raise ValueError("not a form")
    return dict(pairs)


def _masked_data(body: str) -> str | None:
    """The body read as data (JSON, a form) and masked by field, or None when
    it is not data or is nested too deep to walk."""
    try:
        data = _payload(body)
        return json.dumps(mask_value(data), ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):
        return None


def mask_body(body: str) -> str:
    """A message body with personal data masked: read as JSON (or a form) and
    masked by field; text masked where it stands."""
    masked = _masked_data(body)
    return masked if masked is not None else mask_text(body)


def viewer_body(body: str | None) -> str | None:
    """A stored body as a viewer may see it: data masked by field; text that
    is not data (a store's CSV row, a body cut short) is not shown at all,
    since names and streets in it cannot be told from the rest."""
    if not body:
        return body
    masked = _masked_data(body)
    return (
        masked
        if masked is not None
        else (f"(not shown to viewers: {len(body)} characters that are not JSON)")
    )


def personal_values(value: Any, key: str = "", parent: str = "") -> set[str]:
    """The personal values in data (phones, e-mails, names, streets, by field
    name, inside payloads too): what a system or a person may have quoted in
    free text about the same order."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= personal_values(v, str(k), key)
    elif isinstance(value, list):
        for v in value:
            found |= personal_values(v, key, parent)
    elif isinstance(value, str) and len(value.strip()) >= 2:
        k = _key(key)
        if _by_key(k, value, person=k == "name" and _key(parent) in PEOPLE) is not None:
            if k not in SECRET_KEYS:
                found.add(value.strip())
        elif k in PAYLOAD_KEYS or value.lstrip().startswith(("{", "[")):
            try:
                found |= personal_values(_payload(value))
            except (ValueError, RecursionError):
                found |= _keyed_values(value)  # JSON cut short: its "key": "value" pairs
    return found


def _keyed_values(text: str) -> set[str]:
    if len(text) > MAX_MASKED_TEXT:
        return set()
    found = set()
    for m in KEYED_VALUE.finditer(text):
        key, value = _key(m.group(1)), m.group(3)
        personal = _by_key(key, value, person=key == "name") is not None
        if personal and key not in SECRET_KEYS and len(value.strip()) >= 2:
            found.add(value.strip())
    return found


def scrub(value: Any, known: set[str]) -> Any:
    """Every occurrence of a known personal value in the strings of ``value``
    replaced by its masked form (a name an ERP echoed in its refusal, a
    customer's name in an operator's note)."""
    if not known:
        return value
    if isinstance(value, dict):
        return {k: scrub(v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, known) for v in value]
    if isinstance(value, str):
        for secret in sorted(known, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, mask_name(secret))
    return value


def for_viewer(record: Any, *more: Any) -> Any:
    """A record as a viewer may read it: masked by field and in text, and
    every personal value found in it (or in ``more``: the order it is about)
    scrubbed wherever else it is quoted."""
    known = personal_values(record)
    for data in more:
        known |= personal_values(data)
    return scrub(mask_value(record), known)
