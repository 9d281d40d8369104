"""Kingdee, U8 and Chanjet T+ adapters against the fakes in tests/erp_fakes.py
(each fake's shapes and their sources are written there).

The same checks for each system: a paid order lands once with its fields
mapped; the broker's redelivery after a crash before the inbox commit leaves
one record; a token or session that expires mid-run is renewed once and no
order is lost; a rate-limit burst is waited out; an unknown SKU is a dead
letter whose reason names our field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from canonical.errors import DeliveryRejected, DocumentNotSupported
from infra.messages import Delivery
from infra.settings import Settings
from infra.tables import inbox, outbox
from infra.topology import build_topology
from orderbus.bootstrap import ConfigurationError, Orderbus
from router.service import RouterService
from targets.adapters.base import document_number
from targets.consumers import DeliveryConsumer
from tests.erp_fakes import (
    CHANJET,
    KINGDEE,
    U8,
    XINGCHEN,
    FakeChanjet,
    FakeKingdee,
    FakeSystem,
    FakeU8,
    FakeXingchen,
)
from tests.factories import delivery_for, order
from tests.outbox_messages import outbox_deliveries, quick_app


def app_with(sqlite_url: str, targets: dict[str, Any]) -> Orderbus:
    return quick_app(sqlite_url, targets=targets)


def finance_messages(engine: Engine, *external_ids: str, **changes: Any) -> list[Delivery]:
    """The router's messages for the finance system, one per order."""
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    for external_id in external_ids:
        router.handle(
            delivery_for(order(external_id=external_id, **changes), message_id=f"m-{external_id}")
        )
    return outbox_deliveries(engine, outbox.c.message_id.like("%-finance"))


Case = tuple[dict[str, Any], Callable[[], FakeSystem]]
CASES: dict[str, Case] = {
    "kingdee": (KINGDEE, FakeKingdee),
    "u8": (U8, FakeU8),
    "chanjet": (CHANJET, FakeChanjet),
    "xingchen": (XINGCHEN, FakeXingchen),
}


def consumer(sqlite_url: str, system: str, fake: FakeSystem) -> DeliveryConsumer:
    options = CASES[system][0]
    return app_with(sqlite_url, {"finance": options}).delivery_consumer(
        "finance", transport=httpx.MockTransport(fake)
    )


def number_of(message: Delivery) -> str:
    return str(json.loads(message.body)["order_number"])


def check_fields(system: str, record: dict[str, Any], message: Delivery) -> None:
    number = number_of(message)
    if system == "kingdee":
        assert record["FBillNo"] == number
        assert record["FCustId"] == {"FNumber": "CUST-web-shop"}
        lines = [
            (x["FMaterialId"]["FNumber"], x["FQty"], x["FTaxPrice"])
            for x in record["FSaleOrderEntry"]
        ]
        assert record["FSaleOrderEntry"][0]["FEntryNote"] == "K-1"
    elif system == "xingchen":
        assert (record["bill_no"], record["customer_number"]) == (number, "C-web-shop")
        assert record["bill_date"] == "2026-11-11"  # the date the order was placed, in +08:00
        # the gateway wants its numbers as text: exact, as strings
        assert [(x["qty"], x["tax_price"]) for x in record["material_entity"]] == [
            ("2", "10.50"), ("1", "5.00"),
        ]  # fmt: skip
        lines = [
            (x["material_number"], int(x["qty"]), float(x["tax_price"]))
            for x in record["material_entity"]
        ]
    elif system == "u8":
        assert (record["code"], record["custcode"], record["sum"]) == (number, "C-web-shop", 30.5)
        lines = [(x["inventorycode"], x["quantity"], x["taxprice"]) for x in record["entry"]]
    else:
        assert (record["ExternalCode"], record["Customer"]) == (number, {"Code": "C-web-shop"})
        lines = [
            (x["Inventory"]["Code"], x["Quantity"], x["OrigTaxPrice"])
            for x in record["SaleOrderDetails"]
        ]
    assert lines == [("SKU-A", 2, 10.5), ("SKU-B", 1, 5)]


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_paid_order_lands_once_with_its_fields_mapped(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    [message] = finance_messages(sqlite_engine, "K-1")
    finance = consumer(sqlite_url, system, fake)
    finance.handle(message)
    [record] = fake.records.values()
    check_fields(system, record, message)
    calls = len(fake.calls)
    finance.handle(message)  # redelivered after the inbox commit: nothing is sent
    assert len(fake.calls) == calls and len(fake.records) == 1
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(inbox.c.response_status)) == 200


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_redelivery_after_a_crash_leaves_one_record(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    [message] = finance_messages(sqlite_engine, "K-1")
    headers = {"Idempotency-Key": message.message_id or ""}
    # delivered, then the process died before the inbox commit ...
    consumer(sqlite_url, system, fake).delivery.send(message.body, headers)
    # ... and a new process gets the broker's redelivery
    sent = consumer(sqlite_url, system, fake).delivery.send(message.body, headers)
    assert sent.status_code == 200
    assert len(fake.records) == 1


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_token_expiring_mid_run_is_renewed_once(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    messages = finance_messages(sqlite_engine, "T-1", "T-2", "T-3")
    finance = consumer(sqlite_url, system, fake)
    finance.handle(messages[0])
    fake.expire_tokens() if not isinstance(fake, FakeKingdee) else fake.expire_sessions()  # type: ignore[attr-defined]
    finance.handle(messages[1])
    finance.handle(messages[2])
    assert len(fake.records) == 3
    renewals = {
        "kingdee": lambda: fake.logins,  # type: ignore[attr-defined]
        "u8": lambda: fake.issued,  # type: ignore[attr-defined]
        "chanjet": lambda: fake.renewals + 1,  # type: ignore[attr-defined]
        "xingchen": lambda: fake.authorisations,  # type: ignore[attr-defined]
    }[system]()
    assert renewals == 2  # the first token, and one renewal
    with sqlite_engine.connect() as conn:
        assert list(conn.scalars(select(inbox.c.attempts))) == [1, 1, 1]


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_rate_limit_burst_is_waited_out(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    fake.limited = 2
    [message] = finance_messages(sqlite_engine, "R-1")
    consumer(sqlite_url, system, fake).handle(message)
    assert len(fake.records) == 1
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(inbox.c.attempts)) == 3


@pytest.mark.parametrize("system", sorted(CASES))
def test_an_unknown_sku_is_a_dead_letter_naming_the_field(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    fake.known_skus = {"SKU-A"}
    [message] = finance_messages(sqlite_engine, "S-1")
    with pytest.raises(DeliveryRejected) as caught:
        consumer(sqlite_url, system, fake).handle(message)
    assert "items[].sku" in caught.value.detail
    assert "SKU-B" in caught.value.detail
    assert fake.records == {}


def test_u8_waits_for_its_asynchronous_result(sqlite_url: str, sqlite_engine: Engine) -> None:
    fake = FakeU8()
    fake.pending_looks = 2
    [message] = finance_messages(sqlite_engine, "A-1")
    consumer(sqlite_url, "u8", fake).handle(message)
    assert fake.count("/result") == 3 and len(fake.records) == 1


def test_u8_result_not_ready_in_time_is_tried_again_with_the_same_trade_id(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = FakeU8()
    fake.pending_looks = 12  # more than result_polls (10) in one attempt
    [message] = finance_messages(sqlite_engine, "A-2")
    consumer(sqlite_url, "u8", fake).handle(message)
    assert len(fake.records) == 1
    assert fake.count("/system/tradeid") == 1 and fake.count("/api/saleorder/add") == 2


def test_wrong_credentials_are_a_dead_letter_not_a_loop(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = FakeChanjet()
    fake.refresh_tokens.clear()
    fake.expire_tokens()
    [message] = finance_messages(sqlite_engine, "C-1")
    with pytest.raises(DeliveryRejected, match="open token refused"):
        consumer(sqlite_url, "chanjet", fake).handle(message)
    assert fake.count("/saleOrder/Create") == 1 and fake.count("/auth/refreshToken") == 1


def test_missing_options_stop_the_consumer_at_start(sqlite_url: str) -> None:
    broken = {k: v for k, v in KINGDEE.items() if k != "app_secret"}
    with pytest.raises(ConfigurationError, match="app_secret"):
        app_with(sqlite_url, {"finance": broken}).delivery_consumer("finance")


@pytest.mark.parametrize("system", sorted(CASES))
def test_an_after_sale_document_an_adapter_cannot_make_is_a_dead_letter_for_a_person(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    """A cancel before shipment sends finance a reversal; an ERP adapter that
    cannot make one yet must not turn it into a second sales order (a
    duplicate it would count as delivered): it stops, saying what to do."""
    fake = CASES[system][1]()
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(external_id="K-9", status="paid"), message_id="m-1"))
    cancel = order(external_id="K-9", status="cancelled", version=2)
    router.handle(delivery_for(cancel, message_id="m-2"))
    [reversal] = outbox_deliveries(sqlite_engine, outbox.c.message_id.like("%-reversal-%"))
    with pytest.raises(DocumentNotSupported) as stopped:
        consumer(sqlite_url, system, fake).handle(reversal)
    assert "cannot make a reversal" in stopped.value.detail
    assert "status-cancel" in stopped.value.detail and "by hand" in stopped.value.detail
    assert fake.records == {}  # nothing reached the ERP


# -- after-sales documents ------------------------------------------------------

DOCUMENTS: dict[str, dict[str, Any]] = {
    # The form, voucher or bill each system keeps such a document as is the
    # integrator's to name; these stand for them (the fakes check the name).
    "kingdee": {
        "reversal": {
            "form_id": "AR_REFUNDBILL",
            "model": {
                "FBillNo": "{{document_number}}",
                "FSrcBillNo": "{{order_number}}",
                "FRefundAmount": "{{after_sale.amount|number}}",
                "FRemarks": "{{after_sale.id}}",
            },
        },
        "return": {
            "form_id": "SAL_RETURNSTOCK",
            "model": {
                "FBillNo": "{{document_number}}",
                "FEntity": {
                    "$each": "after_sale.lines",
                    "$item": {"FMaterialId": {"FNumber": "{{sku}}"}, "FRealQty": "{{quantity}}",
                              "FAllAmount": "{{amount|number}}"},
                },
            },
        },
    },
    "u8": {
        "reversal": {
            "voucher": "returnorder",
            "template": {"code": "{{document_number}}", "sum": "{{after_sale.minus_amount}}"},
        },
        "return": {
            "voucher": "returnorder",
            "template": {
                "code": "{{document_number}}",
                "entry": {"$each": "after_sale.lines",
                          "$item": {"inventorycode": "{{sku}}", "quantity": "{{minus_quantity}}"}},
            },
        },
    },
    "chanjet": {
        "reversal": {"api": "saleDelivery/Create",
                     "dto": {"ExternalCode": "{{document_number}}",
                             "Amount": "{{after_sale.minus_amount}}"}},
        "return": {
            "api": "saleDelivery/Create",
            "dto": {
                "ExternalCode": "{{document_number}}",
                "SaleDeliveryDetails": {"$each": "after_sale.lines",
                                        "$item": {"Inventory": {"Code": "{{sku}}"},
                                                  "Quantity": "{{minus_quantity}}"}},
            },
        },
    },
    "xingchen": {
        "reversal": {
            "bill": "sal_in_bound",
            "template": {
                "bill_no": "{{document_number}}",
                "bill_date": "{{placed_at|date}}",
                "remark": "{{after_sale.id}} {{after_sale.amount}}",
            },
        },
        "return": {
            "bill": "sal_in_bound",
            "template": {
                "bill_no": "{{document_number}}",
                "bill_date": "{{placed_at|date}}",
                "material_entity": {
                    "$each": "after_sale.lines",
                    "$item": {"material_number": "{{sku}}", "qty": "{{quantity|text}}",
                              "tax_price": "{{unit_price}}"},
                },
            },
        },
    },
}  # fmt: skip
KINDS = {
    "kingdee": {"reversal": "AR_REFUNDBILL", "return": "SAL_RETURNSTOCK"},
    "u8": {"reversal": "returnorder", "return": "returnorder"},
    "chanjet": {"reversal": "saleDelivery/Create", "return": "saleDelivery/Create"},
    "xingchen": {"reversal": "sal_in_bound", "return": "sal_in_bound"},
}


def document_consumer(sqlite_url: str, system: str, fake: FakeSystem) -> DeliveryConsumer:
    options = {**CASES[system][0], "documents": DOCUMENTS[system]}
    return app_with(sqlite_url, {"finance": options}).delivery_consumer(
        "finance", transport=httpx.MockTransport(fake)
    )


def documents_sent(engine: Engine, kind: str) -> list[Delivery]:
    return outbox_deliveries(engine, outbox.c.message_id.like(f"%-{kind}-%"))


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_cancel_reaches_finance_as_one_reversing_document(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(external_id="K-9", status="paid"), message_id="m-1"))
    router.handle(delivery_for(order(external_id="K-9", status="cancelled", version=2),
                               message_id="m-2"))  # fmt: skip
    [reversal] = documents_sent(sqlite_engine, "reversal")
    finance = document_consumer(sqlite_url, system, fake)
    finance.handle(reversal)
    finance.handle(reversal)  # the broker's redelivery after the inbox commit
    number = document_number(number_of(reversal), "reversal", "status-cancel")
    assert list(fake.records) == [number]
    assert fake.kinds[number] == KINDS[system]["reversal"]
    # a crash before the inbox commit: the next process's save is found again
    headers = {"Idempotency-Key": reversal.message_id or "", "X-Orderbus-Document": "reversal",
               "X-Orderbus-After-Sale": "status-cancel"}  # fmt: skip
    sent = document_consumer(sqlite_url, system, fake).delivery.send(reversal.body, headers)
    assert sent.status_code == 200 and list(fake.records) == [number]


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_partial_return_reaches_finance_for_its_line_and_amount(
    system: str, sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = CASES[system][1]()
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    for version, status in enumerate(("paid", "shipped", "delivered"), start=1):
        router.handle(delivery_for(order(external_id="K-8", status=status, version=version),
                                   message_id=f"m-{version}"))  # fmt: skip
    goods = {"id": "RT-1", "kind": "return", "status": "completed", "amount": "5.00",
             "lines": [{"sku": "SKU-B", "quantity": 1, "amount": "5.00"}]}  # fmt: skip
    router.handle(delivery_for(order(external_id="K-8", status="delivered", version=4,
                                     after_sales=[goods]), message_id="m-4"))  # fmt: skip
    [returned] = [m for m in documents_sent(sqlite_engine, "return") if "finance" in str(
        m.message_id)]  # fmt: skip
    document_consumer(sqlite_url, system, fake).handle(returned)
    [record] = fake.records.values()
    if system == "kingdee":
        assert record["FEntity"] == [
            {"FMaterialId": {"FNumber": "SKU-B"}, "FRealQty": 1, "FAllAmount": 5}
        ]
    elif system == "u8":
        assert record["entry"] == [{"inventorycode": "SKU-B", "quantity": -1}]  # red letter
    elif system == "chanjet":
        assert record["SaleDeliveryDetails"] == [{"Inventory": {"Code": "SKU-B"}, "Quantity": -1}]
    else:
        assert record["material_entity"] == [
            {"material_number": "SKU-B", "qty": "1", "tax_price": "5.00"}
        ]
