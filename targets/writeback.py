"""The ``channel`` target: a shipment written back to the order's channel.

Each channel's writer comes from its connector (connectors/writeback.py),
passed in by the composition root; a channel configured as ``{"kind":
"template", "url": ..., "template": ...}`` is written back by a JSON template
(targets/adapters/template.py), e.g. to a bridge of your own. 429 and 5xx are
tried again with backoff; other refusals are dead letters with the channel's
reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.errors import DeliveryRejected
from infra.transports import Transport
from targets.adapters.base import TargetAdapter
from targets.adapters.template import TemplateAdapter, TemplateOptions


class ChannelWriteback:
    """The ``channel`` target's adapter: the write-back of the order's channel."""

    name = "channel write-back"

    def __init__(
        self,
        writers: Mapping[str, TargetAdapter],
        per_channel: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self.adapters: dict[str, TargetAdapter] = dict(writers)
        for channel, options in (per_channel or {}).items():
            if options.get("kind") == "template":
                settings = {k: v for k, v in options.items() if k != "kind"}
                self.adapters[channel] = TemplateAdapter(TemplateOptions.model_validate(settings))

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        adapter = self.adapters.get(str(order.get("channel")))
        if adapter is None:
            raise DeliveryRejected(
                f"channel {order.get('channel')!r} has no write-back configured "
                "(ORDERBUS_WRITEBACK)",
                status_code=0,
                response_body="",
            )
        return adapter.deliver(order, message_id, http)
