"""Pinduoduo write-back: ``pdd.logistics.online.send``, signed and read as the
Pinduoduo poller signs and reads (connectors/pinduoduo.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors import pinduoduo as pdd
from connectors.writeback_common import carrier_id, shipment_of, through_connector
from infra.transports import Transport, http_problem, refused


class PinduoduoWriteback(BaseModel):
    """Pinduoduo: pdd.logistics.online.send."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="pinduoduo", description="this write-back: pinduoduo")
    client_id: str = Field(min_length=1, description="the app's client_id")
    client_secret: str = Field(min_length=1, description="its client_secret")
    access_token: str = Field(min_length=1, description="the shop's access token")
    endpoint: str = Field(default=pdd.PDD_ENDPOINT, description="the API gateway")


class PinduoduoOnlineSend:
    """Signed and read as the Pinduoduo poller signs and reads (connectors/pinduoduo.py)."""

    name = "pinduoduo write-back"

    def __init__(self, options: PinduoduoWriteback, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        o = self.options
        api = "pdd.logistics.online.send"
        params = {
            "order_sn": str(order["external_id"]),
            "logistics_id": carrier_id(shipment, "Pinduoduo"),
            "tracking_number": shipment["tracking_number"],
        }
        form = pdd.signed_form(
            api, params, o.client_id, o.client_secret, o.access_token, self.clock()
        )
        answer = http.post(
            o.endpoint, json.dumps(form).encode("utf-8"), {"Content-Type": "application/json"}
        )
        if answer.status_code == 429 or answer.status_code >= 500:
            raise http_problem("Pinduoduo", answer, answer.text[:300])
        said = through_connector("Pinduoduo", lambda: pdd.read_answer(api, answer.text.encode()))
        if said is None:
            return 200  # shipped already: an earlier delivery of this shipment
        if (said.get("logistics_online_send_response") or {}).get("is_success") is not True:
            raise refused("Pinduoduo", f"not confirmed: {answer.text[:300]}", answer)
        return answer.status_code
