"""The generic signed JSON connector.

The body is a canonical order (``orderbus schema`` prints its JSON Schema)
without ``order_number``; ``channel`` may be left out and is taken from the URL.
The request is signed as :mod:`connectors.signature` describes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from canonical.order import CanonicalOrder
from connectors.base import ConnectorError
from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no duplicate keys."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConnectorError(400, "invalid_encoding", f"body is not UTF-8: {exc}") from exc
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
        )
    except (ValueError, RecursionError) as exc:
        raise ConnectorError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc


class GenericJsonConnector:
    name = "generic-json"

    def authenticate(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secrets: Sequence[str],
        now: float,
        tolerance: int,
    ) -> None:
        try:
            verify(
                secrets,
                headers.get(TIMESTAMP_HEADER.lower()),
                headers.get(SIGNATURE_HEADER.lower()),
                body,
                now,
                tolerance,
            )
        except SignatureError as exc:
            raise ConnectorError(401, exc.reason, exc.detail) from exc

    def parse(self, channel: str, body: bytes) -> CanonicalOrder:
        data = load_json(body)
        if not isinstance(data, dict):
            raise ConnectorError(422, "schema_mismatch", "the body must be a JSON object")
        if "order_number" in data:
            raise ConnectorError(
                422, "schema_mismatch", "order_number is assigned by orderbus; leave it out"
            )
        data.setdefault("channel", channel)
        if data["channel"] != channel:
            raise ConnectorError(
                422,
                "channel_mismatch",
                f"body says channel {data['channel']!r} but was posted to {channel!r}",
            )
        try:
            return CanonicalOrder.model_validate(data)
        except ValidationError as exc:
            errors = [
                {
                    "field": ".".join(str(p) for p in err["loc"]),
                    "message": err["msg"],
                    "type": err["type"],
                }
                for err in exc.errors()[:50]
            ]
            raise ConnectorError(
                422, "schema_mismatch", f"{exc.error_count()} field(s) are invalid", errors
            ) from exc
