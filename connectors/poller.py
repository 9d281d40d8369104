"""The generic REST pull connector: poll a channel's order list for changes.

For a platform that is polled rather than pushing (or to catch what a webhook
missed), a poller asks ``GET url?{since_param}=<cursor - overlap>`` page by
page, maps each order with a :class:`~connectors.mapping.FieldMapping`, and
publishes them to the router with confirms. Then, and only then, it stores its
cursor: the newest update time it published (``poll_cursors``, in the
database). So:

- **no gap**: a poll that fails half-way (the platform, the broker) stores
  nothing, and the next poll asks again from the old cursor; each poll also
  re-reads ``overlap`` seconds before the cursor, for orders the platform
  indexed late;
- **no repeat with effect**: an order polled twice has the same content, so the
  same message id (from its content hash), which the router records once;
- **rate limits**: at most one request per ``min_request_interval`` seconds;
  a 429 or 503 waits for ``Retry-After`` (or backs off) and retries, as do
  connection errors and 5xx (tenacity), then the poll stops until the next one;
- an order the mapping cannot read is recorded in ``rejected_requests`` with
  the reason, and the others go on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from sqlalchemy import Engine, select
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from canonical.errors import EndpointUnavailable
from canonical.order import CanonicalOrder
from connectors.base import ConnectorError
from connectors.mapping import FieldMapping, path_steps, value_at
from connectors.payload import canonical_order, load_json
from connectors.publishing import PublishMany
from infra.database import dialect_insert
from infra.tables import poll_cursors

log = logging.getLogger(__name__)

RecordBad = Callable[[str, str, str], None]  # reason, detail, the item as JSON


@dataclass(frozen=True)
class PollSpec:
    url: str
    items: str  # where the list of orders is in each response, e.g. "$.data.orders"
    since_param: str = "updated_after"
    page_param: str | None = "page"  # pages numbered from 1; or follow next_path
    next_path: str | None = None  # where the next page's URL (or token) is, e.g. "$.next"
    next_token_param: str | None = None  # the next page is ?{this}=<token> on the same URL
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    interval: float = 60.0
    min_request_interval: float = 1.0
    overlap: float = 300.0
    start: str = "1970-01-01T00:00:00+00:00"
    max_pages: int = 1000
    attempts: int = 5


@dataclass
class PollReport:
    since: str
    pages: int = 0
    orders: int = 0
    published: int = 0
    bad: int = 0
    cursor: str | None = None  # stored after the poll; None when nothing was published


class RetryLater(EndpointUnavailable):
    """429/503: the platform says when to come back."""

    def __init__(self, detail: str, retry_after: float | None) -> None:
        super().__init__(detail, reason="rate_limited")
        self.retry_after = retry_after


class RestPoller:
    def __init__(
        self,
        channel: str,
        spec: PollSpec,
        mapping: FieldMapping | None,
        engine: Engine,
        client: httpx.Client,
        publish_many: PublishMany,
        record_bad: RecordBad,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.cursor_key = channel  # where the cursor is kept (poll_cursors.channel)
        self.spec = spec
        self.mapping = mapping
        self.engine = engine
        self.client = client
        self.publish_many = publish_many
        self.record_bad = record_bad
        self.sleep = sleep
        self.clock = clock
        self._items = path_steps(spec.items)
        self._next = path_steps(spec.next_path) if spec.next_path else None
        self._last_request: float | None = None

    # -- the cursor ------------------------------------------------------------
    def cursor(self) -> datetime:
        with self.engine.connect() as conn:
            stored = conn.scalar(
                select(poll_cursors.c.position).where(poll_cursors.c.channel == self.cursor_key)
            )
        return _utc(stored or self.spec.start)

    def _store(self, position: datetime) -> None:
        value = position.astimezone(UTC).isoformat()
        with self.engine.begin() as conn:
            previous = conn.scalar(
                select(poll_cursors.c.position)
                .where(poll_cursors.c.channel == self.cursor_key)
                .with_for_update()
            )
            if previous is not None and _utc(previous) >= position:
                return  # never backwards
            conn.execute(
                dialect_insert(conn, poll_cursors)
                .values(channel=self.cursor_key, position=value, polled_at=datetime.now(UTC))
                .on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["channel"],
                    set_={"position": value, "polled_at": datetime.now(UTC)},
                )
            )

    # -- requests --------------------------------------------------------------
    def _wait_turn(self) -> None:
        if self._last_request is not None:
            left = self._last_request + self.spec.min_request_interval - self.clock()
            if left > 0:
                self.sleep(left)
        self._last_request = self.clock()

    def _request_once(self, url: str, params: dict[str, str] | None) -> Any:
        self._wait_turn()
        try:
            response = self.client.get(url, params=params, headers=self.headers())
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"GET {url}: {exc}") from exc
        if response.status_code in (429, 503):
            raise RetryLater(f"GET {url}: {response.status_code}", _retry_after(response))
        if response.status_code >= 500:
            raise EndpointUnavailable(f"GET {url}: {response.status_code}")
        if response.status_code >= 400:
            raise ConnectorError(
                response.status_code,
                "poll_refused",
                f"GET {url}: {response.status_code} {response.text[:500]}",
            )
        return load_json(response.content, exact_numbers=True)

    def _request(self, url: str, params: dict[str, str] | None) -> Any:
        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            if isinstance(exc, RetryLater) and exc.retry_after is not None:
                return min(exc.retry_after, 300.0)
            return float(wait_exponential(multiplier=1, max=60)(state))

        retrying = Retrying(
            retry=retry_if_exception_type(EndpointUnavailable),
            stop=stop_after_attempt(self.spec.attempts),
            wait=wait,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(self._request_once, url, params)

    # -- one poll --------------------------------------------------------------
    def poll_once(self) -> PollReport:
        """Fetch, map and publish every page of changes since the cursor; then
        store the new cursor. Raises (storing nothing) when the platform or the
        broker fails: the next poll starts from the same cursor."""
        cursor = self.cursor()
        since = cursor - timedelta(seconds=self.spec.overlap)
        report = PollReport(since=since.isoformat())
        newest = cursor
        url: str | None = self.spec.url
        page = 1
        token: str | None = None
        while url is not None and report.pages < self.spec.max_pages:
            params: dict[str, str] | None = None
            if token is not None and self.spec.next_token_param:
                params = {**self.spec.params, self.spec.next_token_param: token}
            elif report.pages == 0 or self._next is None:
                params = {**self.spec.params, self.spec.since_param: _stamp(since)}
                if self.spec.page_param and self._next is None:
                    params[self.spec.page_param] = str(page)
            data = self._request(url, params)
            report.pages += 1
            items = value_at(data, self._items)
            if not isinstance(items, list):
                raise ConnectorError(422, "schema_mismatch", f"no list at {self.spec.items}")
            if not items:
                break
            newest = max(newest, self._publish_items(items, report))
            if self._next is not None:
                following = value_at(data, self._next)
                following = following if isinstance(following, str) and following else None
                if self.spec.next_token_param:
                    token = following
                    url = url if following else None
                else:
                    url = same_origin(self.spec.url or "", following) if following else None
            else:
                page += 1
        if self._next is None and self.spec.page_param and page > 2:
            # Numbered pages: an order updated during the poll moves to the end
            # and the ones after it move up a place, so one may have moved onto
            # a page already read. Reading the pages again from the last back
            # to the first sees every one of them (twice at worst: the content
            # ids absorb that).
            for number in range(page - 1, 0, -1):
                params = {**self.spec.params, self.spec.since_param: _stamp(since)}
                params[self.spec.page_param] = str(number)
                data = self._request(self.spec.url, params)
                report.pages += 1
                items = value_at(data, self._items)
                if isinstance(items, list):
                    newest = max(newest, self._publish_items(items, report))
        if newest > cursor:
            self._store(newest)
            report.cursor = newest.isoformat()
        return report

    def _publish_items(self, items: list[Any], report: PollReport) -> datetime:
        """Map and publish a page's orders (ConnectorError for one is recorded;
        a publish not confirmed raises); the newest change among them."""
        newest = datetime.min.replace(tzinfo=UTC)
        orders = self._read(items, report)
        if orders:
            ids = [f"{self.channel}.poll.{o.content_hash()[:40]}" for o in orders]
            failed = [r for r in self.publish_many(orders, ids) if r is not None]
            if failed:
                raise failed[0]
            report.published += len(orders)
            newest = max(_changed_at(o) for o in orders)
        return newest

    def fields(self, item: Any) -> dict[str, Any]:
        """The canonical order's fields for one listed order (a platform module
        may override this, e.g. to fetch the order's lines)."""
        if self.mapping is None:
            raise NotImplementedError("a poller without a mapping must override fields()")
        return self.mapping.apply(item, self.channel)

    def headers(self) -> dict[str, str]:
        """Headers for every request (a platform module may add a fresh token)."""
        return self.spec.headers

    def _read(self, items: list[Any], report: PollReport) -> list[CanonicalOrder]:
        orders: list[CanonicalOrder] = []
        for item in items:
            report.orders += 1
            try:
                orders.append(canonical_order(self.fields(item)))
            except ConnectorError as exc:
                report.bad += 1
                errors = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors[:10])
                detail = f"{exc.detail} ({errors})" if errors else exc.detail
                self.record_bad(exc.reason, detail, json.dumps(item, default=str)[:4096])
        return orders

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` seconds until ``stop``; a failed poll is logged
        and tried again at the next interval (from the same cursor)."""
        while not stop.is_set():
            try:
                report = self.poll_once()
                log.info(
                    "poll %s: %d pages, %d orders, %d published, %d bad, cursor %s",
                    self.channel,
                    report.pages,
                    report.orders,
                    report.published,
                    report.bad,
                    report.cursor or "unchanged",
                )
            except Exception as exc:
                log.warning("poll %s failed (%s); the next poll starts from the same cursor",
                            self.channel, exc)  # fmt: skip
            stop.wait(self.spec.interval)


def same_origin(base: str, following: str) -> str:
    """The next page's URL, resolved against the poller's own URL; refused
    (ConnectorError) when it points at another scheme, host or port, where the
    poller's credentials (its headers) would go with it."""
    resolved = urljoin(base, following)
    if _origin(resolved) != _origin(base):
        raise ConnectorError(
            422,
            "cross_origin_next",
            f"the response's next page {following[:200]!r} is not on {_origin(base)}: not followed",
        )
    return resolved


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.netloc.rsplit("@", 1)[-1]).lower()


def _stamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, which every platform's API accepts."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _changed_at(order: CanonicalOrder) -> datetime:
    return order.updated_at or order.placed_at


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.replace(".", "", 1).isdigit() else None
