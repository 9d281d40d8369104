"""Polling a platform whose order list is asked for by time window
(Pinduoduo, JD): the windows, their pages read last to first, the cursor
moved only past confirmed orders, and the signed, paced call."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from canonical.errors import EndpointUnavailable
from connectors.poller import PollReport, PollSpec, RestPoller


def window_spec(endpoint: str, items: str, **overrides: Any) -> PollSpec:
    """A window poller's settings: the platform's one endpoint, where its
    answer lists the orders, and five calls a second at most."""
    settings: dict[str, Any] = {"url": endpoint, "items": items, "min_request_interval": 0.2}
    settings.update(overrides)
    return PollSpec(**settings)


class WindowPoller(RestPoller):
    """A platform whose order list is asked for by time window (Pinduoduo, JD).

    It reads windows of at most ``window`` from the cursor (less ``overlap``,
    and no further back than ``history``) up to ``settle`` ago (orders the
    platform indexes late are in), every page of each, and moves the cursor to
    a window's end only once every order in it was confirmed; a failure ends
    the poll and the next one reads the same window again. Pages are read
    from the last to the first (see :meth:`_window`). A platform module says
    how to ask for one page (:meth:`page`) and how to read an order
    (:meth:`fields`).
    """

    window = timedelta(minutes=30)
    settle = timedelta(minutes=3)
    history = timedelta(days=89)

    def __init__(self, *args: Any, now: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        """The orders on page ``number`` of the window, and how many pages it has."""
        raise NotImplementedError

    def post_signed(
        self,
        platform: str,
        api: str,
        read: Callable[[str, bytes], dict[str, Any]],
        **request: Any,
    ) -> dict[str, Any]:
        """POST a signed call, paced; down, 429 or 5xx is EndpointUnavailable
        (the poll is tried again); the answer as the platform module reads it."""
        self._wait_turn()
        try:
            response = self.client.post(self.spec.url, **request)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"{platform} {api}: {exc!r}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EndpointUnavailable(f"{platform} {api}: HTTP {response.status_code}")
        return read(api, response.content)

    def _window(self, start: datetime, end: datetime, report: PollReport) -> None:
        """Page 1 says how many pages there are; then the pages are read from
        the last back to the first. An order updated meanwhile leaves the
        window (it moves to a later one), and the orders after it move up a
        place: read backwards, every one of them is still seen (at worst
        twice, which the message ids absorb), where reading forwards would
        miss the one that moved onto a page already read."""
        items, pages = self.page(start, end, 1)
        report.pages += 1
        self._publish_items(items, report)
        if pages > 1:
            for number in range(min(pages, self.spec.max_pages), 0, -1):
                items, _ = self.page(start, end, number)
                report.pages += 1
                self._publish_items(items, report)

    def poll_once(self) -> PollReport:
        cursor = self.cursor()
        now = datetime.fromtimestamp(self.now(), UTC)
        start = max(cursor - timedelta(seconds=self.spec.overlap), now - self.history)
        report = PollReport(since=start.isoformat())
        limit = now - self.settle
        while start < limit:
            end = min(start + self.window, limit)
            self._window(start, end, report)
            if end > cursor:
                self._store(end)
                cursor = end
                report.cursor = end.isoformat()
            start = end
        return report
