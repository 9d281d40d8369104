"""Reading a stored webhook body again with the connector as it is now, to
see what the canonical orders would become after a connector change, before
anything is sent (the admin API's dry run over the platforms' own orders).

The signature was checked when the body arrived; a replay reads it again and
publishes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from canonical.order import CanonicalOrder
from connectors.base import WebhookRequest
from connectors.registry import channel_config_of, connector_for
from infra.settings import Settings

Replay = Callable[[str, Mapping[str, Any], bytes], list[CanonicalOrder]]


def replayer(settings: Settings) -> Replay:
    def replay(channel: str, headers: Mapping[str, Any], body: bytes) -> list[CanonicalOrder]:
        config = channel_config_of(settings, channel)
        request = WebhookRequest({k.lower(): str(v) for k, v in headers.items()}, body, time.time())
        result = connector_for(config.connector).read(request, config)
        return [arrival.order for arrival in result.arrivals]

    return replay
