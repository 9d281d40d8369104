"""Helpers every connector uses to read a platform's payload exactly.

Strict JSON; money as exact decimals (from strings, or from integer fen/cents,
never from floats that already lost precision); timestamps made
timezone-aware (a platform that sends local time without an offset gets its
documented zone); HMAC comparisons in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from canonical.order import CanonicalOrder
from connectors.base import ConnectorError, WebhookRequest, unauthorized, unreadable

# China Standard Time, the documented zone of the Chinese platforms' timestamps.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_json(body: bytes | str, *, exact_numbers: bool = False) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no duplicate keys.

    ``exact_numbers`` reads numbers with a fraction as Decimal, exactly as
    written: for platforms that document amounts as JSON numbers. Without it
    they are floats, which the canonical model refuses as money.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConnectorError(400, "invalid_encoding", f"body is not UTF-8: {exc}") from exc
    else:
        text = body
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=Decimal if exact_numbers else float,
            object_pairs_hook=_no_duplicate_keys,
        )
    except (ValueError, RecursionError) as exc:
        raise ConnectorError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc


def canonical_order(data: dict[str, Any]) -> CanonicalOrder:
    """A canonical order from a connector's mapping, or ConnectorError(422) listing the fields."""
    try:
        return CanonicalOrder.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()[:50]
        ]
        raise ConnectorError(
            422, "schema_mismatch", f"{exc.error_count()} field(s) are invalid", errors
        ) from exc


def field(data: Mapping[str, Any], *path: str, required: bool = True) -> Any:
    """``data[path[0]][path[1]]...``; ConnectorError(422) naming the path when absent."""
    value: Any = data
    for index, key in enumerate(path):
        if not isinstance(value, Mapping) or value.get(key) is None:
            if not required:
                return None
            where = ".".join(path[: index + 1])
            raise unreadable(f"the payload has no {where}")
        value = value[key]
    return value


def amount(value: Any, where: str) -> Decimal:
    """An amount in currency units, written as a string or a JSON number."""
    if isinstance(value, bool) or value is None:
        raise unreadable(f"{where} is not an amount: {value!r}")
    try:
        result = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise unreadable(f"{where} is not an amount: {value!r}") from None
    if not result.is_finite():
        raise unreadable(f"{where} is not an amount: {value!r}")
    return result


def whole_number(value: Any, where: str) -> int:
    """A count (a quantity) written as a JSON integer or as a string of
    digits, as some platforms' SDK samples send it (``"item_num": "2"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise unreadable(f"{where} is not a whole number: {value!r}")


def minor_units(value: Any, where: str, places: int = 2) -> Decimal:
    """An amount in minor units (fen, cents), an integer, as an exact amount in units."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise unreadable(f"{where} must be an integer number of fen/cents, not {value!r}")
    try:
        units = int(str(value).strip())
    except ValueError:
        raise unreadable(f"{where} must be an integer number of fen/cents: {value!r}") from None
    return Decimal(units).scaleb(-places)


def timestamp(value: Any, where: str, zone: tzinfo = UTC) -> datetime:
    """An aware datetime from ISO 8601, ``YYYY-MM-DD HH:MM:SS`` or Unix seconds;
    a time without an offset is in ``zone`` (the platform's documented zone)."""
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(int(value), UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise unreadable(f"{where} is not a timestamp: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    raise unreadable(f"{where} is not a timestamp: {value!r}")


def hmac_sha256_base64(secret: str, body: bytes) -> str:
    return base64.b64encode(
        hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    ).decode()


def matches_any(offered: str, expected: Iterable[str]) -> bool:
    """Whether ``offered`` equals one of ``expected``; every pair is compared in
    constant time, so timing reveals neither the value nor which secret matched."""
    matched = False
    for good in expected:
        matched |= hmac.compare_digest(offered.encode("utf-8"), good.encode("utf-8"))
    return matched


def require_signature(
    secrets: Iterable[str],
    offered: str | None,
    sign: Callable[[str], str],
    *,
    what: str,
    lower: bool = False,
) -> None:
    """ConnectorError(401) unless ``offered`` is ``sign(secret)`` for one of
    ``secrets``, every one compared in constant time; ``what`` names the
    signature in the answer (a header, a field). Every connector's webhook
    authentication ends here."""
    keys = list(secrets)
    if not keys:
        raise unauthorized("no_secret", "no signing secret is configured for this channel")
    if not offered or not isinstance(offered, str):
        raise unauthorized("missing_signature", f"{what} is required")
    given = offered.strip().lower() if lower else offered.strip()
    if not matches_any(given, (sign(k) for k in keys)):
        raise unauthorized("bad_signature", f"{what} does not match the body")


def signed_delivery_id(signed: bytes | str) -> str:
    """A delivery's id made of the bytes its signature covers: the same on
    every resend of one push, different for any other content. Never a
    platform's unsigned header or envelope field, which anyone replaying a
    captured push could set (to make a copy look new, or to take the id of a
    push yet to come)."""
    data = signed.encode("utf-8") if isinstance(signed, str) else signed
    return "s" + hashlib.sha256(data).hexdigest()[:39]


def require_app(named: str | None, configured: str | None) -> None:
    """ConnectorError(401) when the request names another app than ours (when
    the platform's signature covers the app's id)."""
    if named is not None and configured and named.strip() != configured:
        raise unauthorized("wrong_app", f"the request is for app {named.strip()!r}")


def require_hmac_base64(request: WebhookRequest, secrets: Iterable[str], header: str) -> None:
    """ConnectorError(401) unless ``header`` is the base64 HMAC-SHA256 of the raw
    body under one of ``secrets`` (Shopify's and WooCommerce's scheme)."""
    require_signature(
        secrets,
        request.header(header),
        lambda key: hmac_sha256_base64(key, request.body),
        what=f"{header} header",
    )


# A number as a platform gives it in the clear (a masked one has * in it, an
# encrypted one letters): digits and their punctuation, with an extension
# after "-", "转", "#", "," or "ext" (a privacy number: 17012345678-1234).
PLAIN_PHONE = re.compile(
    r"^\+?[0-9(][0-9 ()./\-]{5,30}(?:\s*(?:[-#,\uff0c转]|ext\.?|x|分机)\s*[0-9]{1,6})?$", re.I
)
# Words of the Chinese platforms' error texts that mean "try again later".
TRY_LATER = re.compile(r"频繁|限流|繁忙|超时|系统|limit|busy|timeout|system", re.IGNORECASE)


def phone_fields(given: str | None, masked: str | None = None) -> dict[str, str | None]:
    """``phone`` when the platform gave the number in the clear, else
    ``masked_phone`` (the number as the platform shows it, or ``masked``)."""
    text = (given or "").strip()
    if PLAIN_PHONE.match(text):
        return {"phone": text, "masked_phone": None}
    return {"phone": None, "masked_phone": text or masked or None}


def sorted_params_md5(params: Mapping[str, str], secret: str) -> str:
    """The TOP-style request signature (Taobao, Pinduoduo, JD): the parameters
    sorted by name, each name followed by its value, wrapped in the secret,
    MD5, upper-case hex."""
    text = secret + "".join(f"{k}{params[k]}" for k in sorted(params)) + secret
    # The platforms' documented scheme; md5 is what they sign with.
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()  # noqa: S324


def address(
    *,
    country: str | None,
    province: str | None,
    city: str | None,
    lines: Iterable[str | None],
    postal_code: str | None,
    district: str | None = None,
) -> dict[str, Any]:
    """A canonical shipping address from a platform's parts: the street lines
    joined, empty parts left out, and no country guessed when none is given."""
    street = " ".join(line for line in lines if line)
    parts: dict[str, Any] = {
        "province": province or None,
        "city": city or None,
        "district": district or None,
        "street": street or None,
        "postal_code": postal_code or None,
    }
    if country:
        parts["country"] = country
    return parts
