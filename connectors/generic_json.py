"""The generic signed JSON connector.

The body is a canonical order (``orderbus schema`` prints its JSON Schema)
without ``order_number``; ``channel`` may be left out and is taken from the URL.
The request is signed as :mod:`connectors.signature` describes.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Arrival, ChannelConfig, ConnectorError, WebhookRequest, WebhookResult
from connectors.payload import canonical_order, load_json
from connectors.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    verify,
)


class GenericJsonConnector:
    name = "generic-json"
    media_types = frozenset({"application/json"})
    reply: dict[str, Any] | None = None

    def authenticate(self, request: WebhookRequest, channel: ChannelConfig, tolerance: int) -> None:
        try:
            verify(
                channel.secrets,
                request.header(TIMESTAMP_HEADER),
                request.header(SIGNATURE_HEADER),
                request.body,
                request.received_at,
                tolerance,
            )
        except SignatureError as exc:
            raise ConnectorError(401, exc.reason, exc.detail) from exc

    def read(self, request: WebhookRequest, channel: ChannelConfig) -> WebhookResult:
        data = load_json(request.body)
        if not isinstance(data, dict):
            raise ConnectorError(422, "schema_mismatch", "the body must be a JSON object")
        if "order_number" in data:
            raise ConnectorError(
                422, "schema_mismatch", "order_number is assigned by orderbus; leave it out"
            )
        data.setdefault("channel", channel.name)
        if channel.shop:
            data.setdefault("shop", channel.shop)
        if data["channel"] != channel.name:
            raise ConnectorError(
                422,
                "channel_mismatch",
                f"body says channel {data['channel']!r} but was posted to {channel.name!r}",
            )
        return WebhookResult((Arrival(canonical_order(data)),))

    def sign(self, body: bytes, secret: str, now: float) -> tuple[dict[str, str], bytes]:
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(int(now)),
            SIGNATURE_HEADER: sign(secret, int(now), body),
        }, body
