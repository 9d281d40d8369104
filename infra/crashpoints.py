"""Deterministic kill -9 for the fault suite.

``ORDERBUS_CRASH_POINTS="router.after_commit:0.02,relay.after_publish:0.01"``
makes the process exit abruptly (``os._exit(137)``, as SIGKILL leaves it: no
cleanup, no ack, no commit) at a named point with the given probability.
Unset (production), :func:`crash_point` does nothing.

Points:
- ``ingest.after_confirm``: the broker confirmed the order, the 202 is not sent;
- ``router.after_commit``: the router's transaction committed, the input is not acked;
- ``relay.after_publish``: an outbox row was confirmed, not yet marked published;
- ``consumer.after_delivery``: the target answered 2xx, the inbox row is not committed.
"""

from __future__ import annotations

import functools
import logging
import os
import random

log = logging.getLogger(__name__)

ENV = "ORDERBUS_CRASH_POINTS"


@functools.cache
def _points() -> dict[str, float]:
    points: dict[str, float] = {}
    for part in os.environ.get(ENV, "").split(","):
        name, _, probability = part.strip().partition(":")
        if name:
            points[name] = float(probability or 1.0)
    return points


def crash_point(name: str) -> None:
    probability = _points().get(name)
    if probability and random.random() < probability:  # noqa: S311 - fault injection
        log.error("crash point %s: exiting abruptly", name)
        logging.shutdown()
        os._exit(137)
