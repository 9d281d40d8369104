"""Readiness: whether every dependency (the database, the broker) answers.

``/readyz`` needs no key (load balancers and orchestrators ask it), so the
checks are run at most once every ``ttl`` seconds, whoever asks and however
often: a flood of requests costs one broker connection per ``ttl``, not one
per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


class Readiness:
    def __init__(
        self,
        checks: Mapping[str, Callable[[], None]],
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.ttl = ttl
        self.clock = clock
        self.runs = 0
        self._lock = threading.Lock()
        self._results: dict[str, str] | None = None
        self._at = 0.0

    def results(self) -> dict[str, str]:
        """Each check's "ok", or "unavailable: why"; at most ``ttl`` old."""
        with self._lock:
            now = self.clock()
            if self._results is None or now - self._at >= self.ttl:
                self._results = self._run()
                self._at = now
            return dict(self._results)

    def _run(self) -> dict[str, str]:
        self.runs += 1
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:  # a check's failure is the answer, not an error
                results[name] = f"unavailable: {exc}"[:300]
        return results
