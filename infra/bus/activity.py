"""Publishes in this process, for consumers of the embedded broker to wake on.

kombu's virtual transports (the SQL transport of the embedded default) have no
push: a consumer polls its queues. Polling every 50 ms from each of a
daemon's consumers cost a third of a core while nothing happened, so a
consumer idle for a while polls only every ``idle_polling_interval`` and
otherwise waits here: any publish of this process (the ingest, the relay)
wakes it at once. A publish from another process (``orderbus import``) is
seen at the next poll, and the consumer is quick again from its first message.
"""

from __future__ import annotations

import threading


class Activity:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def published(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait_after(self, seen: int, timeout: float) -> bool:
        """Wait until something is published after ``seen`` (True) or
        ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count != seen, timeout)


ACTIVITY = Activity()
