"""Writers of a channel's available quantities (targets/stock_push.py).

``http``: ``POST {url}`` with ``{"sku", "quantity", "as_of"}`` as JSON (and
``Authorization: Bearer`` when a token is set): a shop's own stock API, or a
middleware's. 2xx is done; 429 and 5xx are tried again next round; another
4xx is a refusal, kept with the listing. The platforms' own stock APIs
(Shopify inventory levels, Taobao/Tmall, JD, Pinduoduo, Douyin, Youzan) are
not built yet.
"""

from __future__ import annotations

import json
from datetime import datetime

import httpx

from canonical.errors import DeliveryRejected, EndpointUnavailable
from infra.setting_specs import StockChannelSpec


class HttpStockWriter:
    def __init__(self, spec: StockChannelSpec, client: httpx.Client) -> None:
        self.spec = spec
        self.client = client

    def send(self, platform_sku: str, quantity: int, as_of: datetime) -> None:
        body = json.dumps({"sku": platform_sku, "quantity": quantity, "as_of": as_of.isoformat()})
        headers = {"Content-Type": "application/json"}
        if self.spec.token:
            headers["Authorization"] = f"Bearer {self.spec.token}"
        try:
            answer = self.client.post(self.spec.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"stock endpoint {exc}") from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise EndpointUnavailable(f"stock endpoint answered {answer.status_code}")
        if answer.status_code >= 400:
            raise DeliveryRejected(
                f"stock endpoint refused {platform_sku}: {answer.status_code} {answer.text[:500]}",
                status_code=answer.status_code,
                response_body=answer.text[:2000],
            )


def stock_writers(
    channels: dict[str, StockChannelSpec], client: httpx.Client
) -> dict[str, HttpStockWriter]:
    return {name: HttpStockWriter(spec, client) for name, spec in channels.items()}
