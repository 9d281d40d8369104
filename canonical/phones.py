"""Phone numbers as the platforms send them, read with Google's
libphonenumber (the ``phonenumbers`` package): pure data and code, no I/O.

Accepted, for an order shipped to ``country`` (mainland China by default):

- a mainland mobile: ``13800138000``, ``+86 138 0013 8000``;
- a landline with its area code: ``0571-87654321``, ``010 1234 5678``;
- a number with an extension, as Taobao, Pinduoduo and Douyin hand out
  instead of the buyer's own number (a privacy number):
  ``17012345678-1234``, ``17012345678转1234``, ``+1 480-386-0930 ext. 73824``;
- a number of another country when it is written with its ``+`` code, or
  belongs to the order's own country.

A Chinese number must be one that exists (libphonenumber's ranges: a mobile
prefix in use, an area code and its length); another country's number need
only be possible (its length and shape), as the platforms' own samples use
fictional 555 numbers and a foreign plan changes without orderbus knowing: a
refused order costs more than a doubtful number abroad.

A masked number (``138****5678``) is not a phone: connectors put it in
``masked_phone``, which is not validated.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers

# What separates a number from its extension: "-", "转" (transfer), "#",
# "," (Chinese or not), "ext", "x", "分机" (extension).
EXTENSION = re.compile(
    r"^(?P<number>.+?)\s*(?:[-#,\uff0c转]|ext\.?|x|分机)\s*(?P<ext>\d{1,6})$", re.I
)
MOST_CHARACTERS = 40
CHINA = 86
PLAIN_MOBILE = re.compile(r"1[3-9]\d{9}")  # 13800138000: a mainland mobile as typed
PREFIX_DIGITS = 5  # libphonenumber's ranges differ by the 5th digit at most (1740[0-5])


@dataclass(frozen=True)
class Phone:
    """A number that reads as a phone: in E.164, with its extension if any."""

    e164: str
    extension: str | None
    kind: str  # mobile, landline, or other (a service or virtual number)


def read_phone(text: str, country: str | None = "CN") -> Phone | None:
    """``text`` as a phone of an order shipped to ``country``; None when it
    is not one (then :data:`EXPECTED` says what is)."""
    raw = text.strip()
    if not raw or len(raw) > MOST_CHARACTERS:
        return None
    region = (country or "CN").upper()
    if region == "CN" and PLAIN_MOBILE.fullmatch(raw):
        kind = _mainland_mobile_kind(raw[:PREFIX_DIGITS])
        return Phone(f"+86{raw}", None, kind) if kind else None
    found = _parsed(raw, region)
    if found is None and (split := EXTENSION.match(raw)):
        main = _parsed(split["number"], region)
        if main is not None:
            found = Phone(main.e164, split["ext"], main.kind)
    return found


@functools.lru_cache(maxsize=1 << 13)  # 7,000 prefixes from 13000 to 19999
def _mainland_mobile_kind(prefix: str) -> str:
    """The kind of every 11-digit mainland number with this 5-digit prefix
    ("" when none exists): libphonenumber's Chinese ranges are decided by the
    first digits (its patterns let any digits follow them), so one lookup per
    prefix stands for all of its numbers. This is the common case of an
    order's phone, and libphonenumber's parse was the router's largest cost
    per order after the database (``python -m bench.profile``); a unit test
    compares the two on random numbers."""
    found = _parsed(prefix + "0" * (11 - len(prefix)), "CN")
    return found.kind if found else ""


def _parsed(text: str, region: str) -> Phone | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    chinese = number.country_code == CHINA
    exists = phonenumbers.is_valid_number(number) if chinese else None
    if not (exists if chinese else phonenumbers.is_possible_number(number)):
        return None
    kind = phonenumbers.number_type(number)
    name = (
        "mobile"
        if kind
        in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
        else "landline"
        if kind == phonenumbers.PhoneNumberType.FIXED_LINE
        else "other"
    )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164, number.extension or None, name)


EXPECTED = (
    "a mobile (13800138000), a landline with its area code (0571-87654321), "
    "a number with an extension (17012345678-1234), or a number of another "
    "country with its + code (+1 480-386-0930)"
)
