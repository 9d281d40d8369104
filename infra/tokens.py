"""One credential (an access token, a session) shared by a client's threads:
fetched when first needed, renewed ``margin`` seconds before it expires, and
dropped when the system says it expired, so the next :meth:`TokenCache.get`
fetches a new one. Callers try a request again once with a new token; a token
refused twice is the credentials' fault, never retried in a loop. Used by the
platforms' API clients (Doudian, Youzan) and the ERP adapters (U8, Kingdee)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# fetch() -> (the token, the seconds it lives, or None: until refused)
Fetch = Callable[[], tuple[str, float | None]]


class TokenCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        margin: float = 60.0,
        floor: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.margin = margin  # renewed this early, so no request leaves with a dying token
        self.floor = floor  # but kept at least this long, however short its life
        self.clock = clock
        self._token: str | None = None
        self._until = 0.0
        self._lock = threading.Lock()
        self.fetched = 0

    def get(self) -> str:
        with self._lock:
            if self._token is None or self.clock() >= self._until:
                token, lifetime = self._fetch()
                self.fetched += 1
                self._token = token
                now = self.clock()
                self._until = (
                    now + max(lifetime - self.margin, self.floor) if lifetime else float("inf")
                )
            return self._token

    def expired(self, token: str | None = None) -> None:
        """The system refused ``token`` (or, with None, whatever is held)."""
        with self._lock:
            if token is None or self._token == token:
                self._token = None
