"""Languages, message catalogs, and how times and money read in each.

Every text a person reads goes through ``_()``: the message ids are the
English texts (gettext's convention), and ``locale/<lang>/LC_MESSAGES/
console.po`` holds each language's translations. Chinese (zh-CN) is the
default; English is the message ids themselves. ``python -m console.catalog``
adds new message ids to the catalogs; tests/unit/test_console_catalog.py
fails on a text with no Chinese translation or written outside ``_()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "console"
# The language a person picks (cookie, link) -> Babel's locale name.
LANGUAGES: Mapping[str, str] = {"zh-CN": "zh_CN", "en": "en"}
DEFAULT_LANGUAGE = "zh-CN"


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / LANGUAGES[language] / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> Mapping[str, str]:
    """msgid -> translated text for ``language`` (untranslated ids left out)."""
    with catalog_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=LANGUAGES[language])
    return {
        str(m.id): str(m.string)
        for m in catalog
        if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string
    }


def language_of(asked: str | None) -> str:
    return asked if asked is not None and asked in LANGUAGES else DEFAULT_LANGUAGE


Gettext = Callable[..., str]


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark, do not translate yet"
    """Marks a text for the catalog where it is defined (a table of words);
    it is translated where it is shown, with ``_()``."""
    return message


def gettext_for(language: str) -> Gettext:
    """``_(text, **values)``: the translation, with ``%(name)s`` filled in."""
    table = translations(language)

    def _(message: str, **values: Any) -> str:
        text = table.get(message, message)
        return text % values if values else text

    return _


@dataclass(frozen=True)
class Formats:
    """How one viewer reads times and money: their language and time zone."""

    language: str
    zone: ZoneInfo

    @property
    def locale(self) -> str:
        return LANGUAGES[self.language]

    def when(self, value: datetime | str | None, *, seconds: bool = False) -> str:
        """A moment in the viewer's zone, e.g. 2026-12-01 14:03."""
        moment = _moment(value)
        if moment is None:
            return "—"
        pattern = "yyyy-MM-dd HH:mm:ss" if seconds else "yyyy-MM-dd HH:mm"
        return format_datetime(moment, pattern, tzinfo=self.zone, locale=self.locale)

    def day(self, value: date) -> str:
        return format_date(value, "medium", locale=self.locale)

    def money(self, amount: Any, currency: str | None) -> str:
        """An amount with its currency: ¥1,234.50, US$12.00 (exact: a Decimal)."""
        try:
            exact = Decimal(str(amount))
        except (InvalidOperation, ValueError):
            return str(amount)
        if not currency:
            return format_decimal(exact, "#,##0.00", locale=self.locale)
        return format_currency(exact, currency, locale=self.locale)

    def today(self) -> date:
        return datetime.now(self.zone).date()


def _moment(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # orderbus writes UTC
