"""A poll of an ERP's or a warehouse's stock query (``ORDERBUS_STOCK.poll``),
for a system that answers a stock query but pushes nothing.

Every ``interval`` seconds: the query (GET, or POST with a JSON body), the
levels at ``items`` in its JSON answer, each level's SKU and units at ``sku``
and ``available``; with ``page_field``/``page_from``, a full page
(``page_size`` levels) asks for the levels after its last one (Jiandaoyun's
``data_id`` paging), up to ``max_pages``. The levels are counted as of the
poll's start and handed to the stock intake (router/stock.py), which keeps
only levels newer than those it has and records what each channel listing
can sell; the pusher sends what changed.

Units come as a number or a number as text ("12.0000" from an ERP): a
fraction is rounded down (half a unit cannot be sold) and a negative level
(an ERP that allows selling short) counts as none. A level without a SKU or
with units that are not a number is recorded with its reason
(rejected requests, as a polled order that cannot be read is), and the rest
of the poll goes on. The query down, slow or refusing (any non-2xx) ends the
poll; the next one asks again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import httpx

from canonical.errors import EndpointUnavailable
from canonical.stock import StockLevel, StockReport
from connectors.mapping import MISSING, path_steps, value_at
from infra.setting_specs import StockPollSpec

log = logging.getLogger(__name__)

AcceptReport = Callable[[StockReport], int]  # the stock intake: listings changed
RecordBad = Callable[[str, str, str], None]  # reason, detail, the level as JSON
BATCH = 5000  # levels a report at most (StockReport's limit)


@dataclass
class StockPollReport:
    pages: int = 0
    levels: int = 0
    bad: int = 0
    listings_changed: int = 0


class StockPoll:
    def __init__(
        self,
        spec: StockPollSpec,
        client: httpx.Client,
        accept: AcceptReport,
        record_bad: RecordBad,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.client = client
        self.accept = accept
        self.record_bad = record_bad
        self.clock = clock
        self._items = steps(spec.items)
        self._sku = steps(spec.sku)
        self._available = steps(spec.available)
        self._page_from = steps(spec.page_from) if spec.page_from else None

    def poll_once(self) -> StockPollReport:
        as_of = datetime.fromtimestamp(self.clock(), UTC)
        report = StockPollReport()
        levels: dict[str, StockLevel] = {}
        after: Any = None
        for _ in range(self.spec.max_pages):
            page = self._page(after)
            report.pages += 1
            for item in page:
                level = self._level(item, as_of, report)
                if level is not None:
                    levels[level.sku] = level
            if not self._next_page_wanted(page):
                break
            after = value_at(page[-1], self._page_from or [])
        report.levels = len(levels)
        found = list(levels.values())
        for start in range(0, len(found), BATCH):
            report.listings_changed += self.accept(StockReport(levels=found[start : start + BATCH]))
        return report

    def _next_page_wanted(self, page: list[Any]) -> bool:
        return bool(self.spec.page_field and self._page_from and len(page) >= self.spec.page_size)

    def _page(self, after: Any) -> list[Any]:
        spec = self.spec
        try:
            if spec.method == "GET":
                answer = self.client.get(spec.url, headers=spec.headers)
            else:
                body = dict(spec.body or {})
                if spec.page_field and after is not None:
                    body[spec.page_field] = after
                answer = self.client.post(spec.url, json=body, headers=spec.headers)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"stock query {spec.url}: {exc!r}") from exc
        if not 200 <= answer.status_code < 300:
            raise EndpointUnavailable(
                f"stock query {spec.url} answered {answer.status_code}: {answer.text[:300]}"
            )
        try:
            items = value_at(answer.json(), self._items)
        except ValueError as exc:
            raise EndpointUnavailable(f"stock query {spec.url}: the answer is not JSON") from exc
        if not isinstance(items, list):
            raise EndpointUnavailable(
                f"stock query {spec.url}: no list at {spec.items} in {answer.text[:200]}"
            )
        return items

    def _level(self, item: Any, as_of: datetime, report: StockPollReport) -> StockLevel | None:
        sku = value_at(item, self._sku) if isinstance(item, dict) else MISSING
        given = value_at(item, self._available) if isinstance(item, dict) else MISSING
        units = units_of(given)
        named = isinstance(sku, str | int) and not isinstance(sku, bool) and str(sku).strip()
        if not named or units is None:
            report.bad += 1
            shown = "none" if given is MISSING else repr(given)
            what = "no SKU" if not named else f"units {shown}"
            detail = f"stock query {self.spec.url}: a level with {what} ({self.spec.sku}, "
            detail += f"{self.spec.available}) was left out"
            self.record_bad("unreadable_stock_level", detail, json.dumps(item, default=str)[:4096])
            return None
        return StockLevel(sku=str(sku).strip(), available=units, as_of=as_of)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                done = self.poll_once()
                log.info(
                    "stock poll: %d pages, %d levels, %d bad, %d listings changed",
                    done.pages, done.levels, done.bad, done.listings_changed,
                )  # fmt: skip
            except Exception as exc:
                log.warning("stock poll failed (%s); the next poll asks again", exc)
            stop.wait(self.spec.interval)


def steps(path: str) -> list[str | int | None]:
    """A dotted path (``data``, ``$.data.rows``) as the mapping's steps."""
    return path_steps(path if path.startswith("$") else f"$.{path}")


def units_of(value: Any) -> int | None:
    """Units that can be sold: a whole number of them, none below zero; None
    when ``value`` is not a number."""
    if isinstance(value, bool) or value is None or value is MISSING:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return max(int(number.to_integral_value(rounding=ROUND_FLOOR)), 0)
