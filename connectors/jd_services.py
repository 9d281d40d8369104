"""JD after-sale service orders (售后服务单): returns and money-only refunds
after shipment, per line, read by the JD poller when the shop's vender id is
configured.

What JD answers, as its open platform's SDK types it
(``com.jd.open.api.sdk.domain.shangjiashouhou.ServiceQueryProvider``:
``ServiceBrief``) and as integrators read it (a seller system's test data with
a listed service order and its detail; two ERPs' pollers):

- ``jingdong.asc.query.list`` takes ``buId`` (the vender id), ``operatePin``,
  ``operateNick``, ``updateTimeBegin``/``updateTimeEnd`` (``yyyy-MM-dd
  HH:mm:ss``), ``pageNumber``, ``pageSize``; it answers
  ``jingdong_asc_query_list_responce`` with ``code`` ("0" when it worked) and
  ``pageResult`` (``success``, ``data``, ``totalCount``).
- Each ``data`` entry has ``serviceId``, ``orderId``, ``skuId``,
  ``customerExpect`` (the buyer's wish: 10 退货 return, 11 仅退款 money only;
  20 换货 exchange, 30 维修 repair, 80 补发 resend and the others are not
  money coming back), ``serviceStatus`` with ``serviceStatusName``,
  ``serviceCount`` (units; ``wareNum`` in older answers), ``actualPayPrice``
  (what the buyer paid for them, yuan), ``processResult`` with
  ``processResultName`` (40: 退货, goods back for money; 23: 换新, a
  replacement), ``applyTime`` and ``updateDate``/``updateTime`` (milliseconds).

JD's documents for the status codes could not be read here (only 10005
待收货 was seen in a sample), so a service order's status is read by its
name: 待审核 requested; 待收货, 待处理 agreed; 审核关闭, 审核不通过 refused;
取消, 已取消 withdrawn; 完成, 已完成 completed. Another name is recorded for
a person, never guessed: a wrong guess could undo a sale. A service order
finished as anything but a return (``processResult`` other than 40, such as a
replacement) is recorded too.

The service order's SKU is JD's ``skuId``; orderbus's line has the shop's
``outerSkuId`` when it has one, so an order whose lines are not ``jd-<skuId>``
is read once with ``jingdong.pop.order.get`` (``order_id``,
``optional_fields``), answered ``jingdong_pop_order_get_responce.
orderDetailInfo.orderInfo.itemInfoList``, to find the line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from canonical.aftersales import AfterSale
from canonical.order import CanonicalOrder
from connectors.base import AfterSaleChange, ConnectorError, unreadable
from connectors.jd import (
    PAGE_SIZE,
    JdRefundPoller,
    as_code,
    failure,
    line_sku,
    local_time,
)
from connectors.known_orders import stored_order, with_after_sale
from connectors.payload import amount, field
from connectors.refunds import SHIPPED, after_sale, kind_of, sale_line

SERVICE_API = "jingdong.asc.query.list"
ORDER_API = "jingdong.pop.order.get"
OPERATOR = "orderbus"
RETURN, MONEY_ONLY = 10, 11  # customerExpect: 退货, 仅退款
RETURNED = 40  # processResult: 退货
STATUS_NAMES = {
    "待审核": "requested",
    "待收货": "agreed",
    "待处理": "agreed",
    "审核关闭": "refused",
    "审核不通过": "refused",
    "取消": "withdrawn",
    "已取消": "withdrawn",
    "完成": "completed",
    "已完成": "completed",
}


def _moment(value: Any, where: str) -> datetime:
    """JD's after-sale times: milliseconds since the epoch."""
    text = str(value).strip()
    if not text.isdigit():
        raise unreadable(f"{where} is not a time in milliseconds: {value!r}")
    return datetime.fromtimestamp(int(text) / 1000, UTC)


def _units(value: Any) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise unreadable(f"serviceCount is not a count of units: {value!r}")
    return int(text)


def service_status(service: dict[str, Any]) -> str:
    """The canonical status from the service order's status name."""
    name = str(service.get("serviceStatusName") or "").strip()
    if name not in STATUS_NAMES:
        raise unreadable(
            f"service order {service.get('serviceId')}: status {service.get('serviceStatus')!r} "
            f"({name or 'no name'}) is not one orderbus knows"
        )
    status = STATUS_NAMES[name]
    result = as_code(service.get("processResult"))
    if (
        status == "completed"
        and result not in (None, RETURNED)
        and as_code(service.get("customerExpect")) == RETURN
    ):
        raise unreadable(
            f"service order {service.get('serviceId')} was finished as "
            f"{service.get('processResultName') or result!r}, not as a return: "
            "no money comes back through orderbus; check it in JD's after-sales"
        )
    return status


class JdServicePoller(JdRefundPoller):
    """Service orders changed in each window (by update time), each an
    after-sale of its line of the order orderbus has; pages read forward
    until a short one. Exchanges, repairs and resends are left out."""

    def __init__(self, *args: Any, vender_id: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.vender_id = vender_id
        self.cursor_key = f"{self.channel}:services"
        self._order_skus: dict[str, dict[str, str]] = {}

    def page(self, start: datetime, end: datetime, number: int) -> tuple[list[Any], int]:
        business = {
            "buId": self.vender_id,
            "operatePin": OPERATOR,
            "operateNick": OPERATOR,
            "updateTimeBegin": local_time(start),
            "updateTimeEnd": local_time(end),
            "pageNumber": number,
            "pageSize": PAGE_SIZE,
        }
        answer = field(self.call(SERVICE_API, business), "jingdong_asc_query_list_responce")
        result = answer.get("pageResult") or {}
        if str(answer.get("code", "0")) != "0" or result.get("success") is False:
            detail = f"{answer.get('code')} {result.get('code')} {result.get('msg')}"
            raise failure(f"JD {SERVICE_API} said: {detail}"[:500])
        items = list(result.get("data") or [])
        return items, number + 1 if len(items) >= PAGE_SIZE else number

    def entry(self, item: Any) -> Any:
        return item

    def wanted(self, item: Any) -> bool:
        """Only returns and money-only refunds give money back."""
        return not isinstance(item, dict) or as_code(item.get("customerExpect")) in (
            RETURN,
            MONEY_ONLY,
        )

    def _revised(self, service: Any) -> tuple[CanonicalOrder, str]:
        if not isinstance(service, dict):
            raise unreadable("a service order is not an object")
        order_id = str(field(service, "orderId"))
        stored = stored_order(self.orders_engine, self.channel, self.shop, order_id)
        if stored is None:
            raise ConnectorError(
                422,
                "order_not_known",
                f"service order {service.get('serviceId')} is for order {order_id}, which "
                "orderbus does not have",
            )
        status = service_status(service)
        sku = self._line_sku(order_id, str(field(service, "skuId")), stored)
        units = _units(service.get("serviceCount") or service.get("wareNum") or 1)
        money = amount(field(service, "actualPayPrice"), "actualPayPrice")
        updated = service.get("updateDate") or service.get("updateTime")
        at = _moment(updated, "updateDate") if updated else datetime.now(UTC)
        returns = as_code(service.get("customerExpect")) == RETURN
        sale = after_sale(
            field(service, "serviceId"),
            kind_of(returns_goods=returns, shipped=stored.get("status") in SHIPPED),
            status,
            money,
            lines=[sale_line(sku, units, money)],
            reason=service.get("customerExpectName"),
            updated_at=at,
        )
        change = AfterSaleChange(order_id, self.shop, AfterSale.model_validate(sale), at, None)
        stamp = int(at.timestamp() * 1000)
        return with_after_sale(
            stored, change
        ), f"{self.channel}.service.{sale['id']}.{status}.{stamp}"

    def _line_sku(self, order_id: str, jd_sku: str, stored: dict[str, Any]) -> str:
        """orderbus's SKU of the order's line that JD calls ``jd_sku``."""
        skus = {str(item.get("sku")) for item in stored.get("items") or []}
        if f"jd-{jd_sku}" in skus:
            return f"jd-{jd_sku}"
        if order_id not in self._order_skus:
            self._order_skus[order_id] = self._read_order_skus(order_id)
        sku = self._order_skus[order_id].get(jd_sku)
        if sku is None or sku not in skus:
            raise unreadable(f"order {order_id} has no line for JD's skuId {jd_sku}")
        return sku

    def _read_order_skus(self, order_id: str) -> dict[str, str]:
        business = {"order_id": order_id, "optional_fields": "orderId,itemInfoList"}
        answer = self.call(ORDER_API, business)
        info = field(answer, "jingdong_pop_order_get_responce", "orderDetailInfo")
        api = info.get("apiResult") or {}
        if api.get("success") is False:
            raise failure(f"JD {ORDER_API} said: {api.get('chineseErrCode')}"[:500])
        lines = field(info, "orderInfo").get("itemInfoList") or []
        return {str(line.get("skuId")): line_sku(line) for line in lines if isinstance(line, dict)}

    def poll_once(self) -> Any:
        self._order_skus.clear()
        return super().poll_once()
