"""Readiness: whether every dependency (the database, the broker) answers.

``/readyz`` needs no key (load balancers and orchestrators ask it), so the
checks are run at most once every ``ttl`` seconds, whoever asks and however
often: a flood of requests costs one broker connection per ``ttl``, not one
per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any


class NotReady(Exception):
    """A check's failure that also says what it saw (``details``)."""

    def __init__(self, detail: str, details: dict[str, Any]) -> None:
        super().__init__(detail)
        self.details = details


class Readiness:
    """A check returns nothing, or what it saw (shown with the answer); it
    raises when the thing is not ready (NotReady with what it saw)."""

    def __init__(
        self,
        checks: Mapping[str, Callable[[], Any]],
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.ttl = ttl
        self.clock = clock
        self.runs = 0
        self._lock = threading.Lock()
        self._results: dict[str, str] | None = None
        self._details: dict[str, Any] = {}
        self._at = 0.0

    def results(self) -> dict[str, str]:
        """Each check's "ok", or "unavailable: why"; at most ``ttl`` old."""
        with self._lock:
            now = self.clock()
            if self._results is None or now - self._at >= self.ttl:
                self._results = self._run()
                self._at = now
            return dict(self._results)

    def details(self) -> dict[str, Any]:
        """What the checks saw at their last run (e.g. each component's processes)."""
        with self._lock:
            return dict(self._details)

    def _run(self) -> dict[str, str]:
        self.runs += 1
        results: dict[str, str] = {}
        details: dict[str, Any] = {}
        for name, check in self.checks.items():
            try:
                seen = check()
                results[name] = "ok"
                if isinstance(seen, dict):
                    details[name] = seen
            except NotReady as exc:
                results[name] = f"unavailable: {exc}"[:300]
                details[name] = exc.details
            except Exception as exc:  # a check's failure is the answer, not an error
                results[name] = f"unavailable: {exc}"[:300]
        self._details = details
        return results
