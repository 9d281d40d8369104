"""Douyin write-back: Doudian ``order.logisticsAdd`` through the Douyin
connector's signed client and token (connectors/douyin.py)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.douyin import API_ENDPOINT as DOUDIAN_ENDPOINT
from connectors.douyin import DoudianApi
from connectors.writeback_common import shipment_of, through_connector
from infra.transports import Transport


class DouyinWriteback(BaseModel):
    """Douyin shop: Doudian order.logisticsAdd through the connector's client."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="douyin", description="this write-back: douyin")
    app_key: str = Field(min_length=1, description="the app's key")
    app_secret: str = Field(min_length=1, description="its secret")
    shop_id: str = Field(min_length=1, description="the shop's id")
    endpoint: str = Field(default=DOUDIAN_ENDPOINT, description="Doudian's open API")


class DouyinLogisticsAdd:
    name = "douyin write-back"

    def __init__(self, options: DouyinWriteback, client: httpx.Client) -> None:
        self.api = DoudianApi(
            client, options.app_key, options.app_secret, options.shop_id, options.endpoint
        )

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        params = {
            "order_id": str(order["external_id"]),
            "company_code": shipment.get("carrier_code") or shipment["carrier"],
            "logistics_code": shipment["tracking_number"],
        }
        through_connector("Doudian", lambda: self.api.call("order.logisticsAdd", params))
        return 200
