"""Taobao/Tmall write-back: ``taobao.logistics.offline.send`` through the
connector's TOP client (connectors/taobao.py)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from canonical.errors import DeliveryRejected
from connectors.taobao import TOP_ENDPOINT, TopApi
from connectors.writeback_common import shipment_of, through_connector
from infra.transports import Transport


class TaobaoWriteback(BaseModel):
    """Taobao/Tmall: taobao.logistics.offline.send."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="taobao", description="this write-back: taobao")
    app_key: str = Field(min_length=1, description="the app's key")
    app_secret: str = Field(min_length=1, description="its secret")
    session: str = Field(min_length=1, description="the shop's session key")
    endpoint: str = Field(default=TOP_ENDPOINT, description="the TOP gateway")


class TaobaoOfflineSend:
    """Through the Taobao connector's TOP client (connectors/taobao.py), which
    signs the call and sorts TOP's errors into try-again and refused."""

    name = "taobao write-back"

    def __init__(self, options: TaobaoWriteback, client: httpx.Client) -> None:
        self.api = TopApi(
            client, options.app_key, options.app_secret, options.session, options.endpoint
        )

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        params = {
            "tid": str(order["external_id"]),
            "out_sid": shipment["tracking_number"],
            "company_code": shipment.get("carrier_code") or shipment["carrier"],
        }
        result = through_connector(
            "Taobao", lambda: self.api.call("taobao.logistics.offline.send", params)
        )
        if result is None:
            return 200  # shipped already: an earlier delivery of this shipment
        if (result.get("shipping") or {}).get("is_success") is not True:
            raise DeliveryRejected(
                f"Taobao did not confirm the shipment: {result}", status_code=0, response_body=""
            )
        return 200
