"""JD write-back: ``jingdong.pop.order.shipment``, signed and read as the JD
poller signs and reads (connectors/jd.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from connectors import jd
from connectors.writeback_common import (
    as_delivery_error,
    carrier_id,
    shipment_of,
    through_connector,
)
from infra.transports import Transport, http_problem

SHANGHAI = ZoneInfo("Asia/Shanghai")


class JdWriteback(BaseModel):
    """JD: jingdong.pop.order.shipment."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(default="jd", description="this write-back: jd")
    app_key: str = Field(min_length=1, description="the app's key")
    app_secret: str = Field(min_length=1, description="its secret")
    access_token: str = Field(min_length=1, description="the shop's access token")
    endpoint: str = Field(default=jd.JD_ENDPOINT, description="the API gateway")


class JdShipment:
    """Signed and read as the JD poller signs and reads (connectors/jd.py)."""

    name = "jd write-back"

    def __init__(self, options: JdWriteback, clock: Callable[[], datetime] | None = None) -> None:
        self.options = options
        self.clock = clock or (lambda: datetime.now(SHANGHAI))

    def deliver(self, order: dict[str, Any], message_id: str, http: Transport) -> int:
        shipment = shipment_of(order)
        o = self.options
        method = "jingdong.pop.order.shipment"
        business = {
            "orderId": str(order["external_id"]),
            "logiCoprId": carrier_id(shipment, "JD"),
            "logiNo": shipment["tracking_number"],
        }
        form = jd.signed_form(
            method, business, o.app_key, o.app_secret, o.access_token, self.clock()
        )
        answer = http.post(
            o.endpoint,
            urlencode(form).encode("utf-8"),
            {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        if answer.status_code == 429 or answer.status_code >= 500:
            raise http_problem("JD", answer, answer.text[:300])
        said = through_connector("JD", lambda: jd.read_answer(method, answer.text.encode()))
        if said is None:
            return 200  # shipped already: an earlier delivery of this shipment
        wrapper = said.get("jingdong_pop_order_shipment_responce") or {}
        result = wrapper.get("sopjosshipment_result") or {}
        if result.get("success") is True:
            return answer.status_code
        problem = as_delivery_error(
            "JD",
            jd.failure(f"JD {method}: {result.get('errorCode')} {result.get('chineseErrCode')}"),
        )
        if problem is None:
            return 200  # shipped already: an earlier delivery of this shipment
        raise problem
