"""Youzan write-back: ``youzan.logistics.online.confirm`` through the Youzan
connector's API client and its token (connectors/youzan.py)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import DeliveryRejected
from connectors.writeback_common import carrier_id, shipment_of, through_connector
from connectors.youzan import YOUZAN_API, YouzanApi
from infra.transports import Transport


class YouzanWriteback(BaseModel):
    """Youzan: youzan.logistics.online.confirm through the connector's client."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="youzan", description="this write-back: youzan")
    client_id: str = Field(min_length=1, description="the self-used app's client_id")
    client_secret: str = Field(min_length=1, description="its client_secret")
    grant_id: str = Field(min_length=1, description="the shop's kdt_id")
    endpoint: str = Field(default=YOUZAN_API, description="Youzan's open API")


class YouzanConfirm:
    name = "youzan write-back"

    def __init__(self, options: YouzanWriteback, client: httpx.Client) -> None:
        self.api = YouzanApi(
            client, options.client_id, options.client_secret, options.grant_id, options.endpoint
        )

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        body = {
            "tid": str(order["external_id"]),
            "out_stype": carrier_id(shipment, "Youzan"),
            "out_sid": shipment["tracking_number"],
            "is_no_express": 0,
        }
        data = through_connector(
            "Youzan", lambda: self.api.call("youzan.logistics.online.confirm", "3.0.0", body)
        )
        if data is not None and data.get("is_success") is False:
            raise DeliveryRejected(
                f"Youzan did not confirm the shipment: {data}", status_code=0, response_body=""
            )
        return 200
