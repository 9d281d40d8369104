"""Reading a stored webhook body, or a platform API's answer kept by the
fetch worker, again with the connector as it is now, to see what the
canonical orders would become after a connector change, before anything is
sent (the admin API's dry run over the platforms' own orders).

The signature was checked when the body arrived; a replay reads it again,
calls no platform and publishes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from canonical.order import CanonicalOrder
from connectors.base import WebhookRequest
from connectors.payload import load_json
from connectors.registry import channel_config_of, connector_for, order_source_for
from infra.raw_payloads import SOURCE
from infra.settings import Settings

Replay = Callable[[str, Mapping[str, Any], bytes], list[CanonicalOrder]]


def replayer(settings: Settings) -> Replay:
    def replay(channel: str, headers: Mapping[str, Any], body: bytes) -> list[CanonicalOrder]:
        if headers.get(SOURCE) == "fetched":
            return [_read_fetched(settings, channel, body)]
        config = channel_config_of(settings, channel)
        request = WebhookRequest({k.lower(): str(v) for k, v in headers.items()}, body, time.time())
        result = connector_for(config.connector).read(request, config)
        return [arrival.order for arrival in result.arrivals]

    return replay


def _read_fetched(settings: Settings, channel: str, body: bytes) -> CanonicalOrder:
    """An answer the channel's fetch worker kept, read by its source (built
    as the worker builds it; its API client is never called)."""
    with httpx.Client() as unused:
        source = order_source_for(settings, channel, unused)
    read = getattr(source, "read_fetched", None)
    if read is None:
        raise ValueError(f"channel {channel}'s source cannot read a kept answer again")
    order: CanonicalOrder = read(load_json(body, exact_numbers=True))
    return order
