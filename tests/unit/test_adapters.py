"""Target adapters against fakes of the systems (tests/erp_fakes.py): a paid
order lands once in Jiandaoyun with its fields mapped; a replay leaves one
record; a rate-limit burst is waited out; a form's refusal is a dead letter
naming our field; the generic template target fills its body exactly."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from canonical.errors import DeliveryRejected
from infra.messages import Delivery
from infra.settings import Settings
from infra.tables import inbox, outbox
from infra.topology import build_topology
from orderbus.bootstrap import ConfigurationError, Orderbus
from router.service import RouterService
from targets.adapters.base import as_number
from targets.adapters.base import render as fill
from targets.consumers import DeliveryConsumer
from tests.erp_fakes import FakeJiandaoyun
from tests.factories import delivery_for, order
from tests.outbox_messages import outbox_deliveries, quick_app

MAPPING = {
    "_widget_1001": "order_number",
    "_widget_1002": "channel",
    "_widget_1003": "customer.phone",
    "_widget_1004": {"path": "total", "number": True},
    "_widget_1005": {
        "subform": "items",
        "fields": {"_widget_1006": "sku", "_widget_1007": "quantity", "_widget_1008": "unit_price"},
    },
}
JDY = {
    "adapter": "jiandaoyun",
    "endpoint": "https://jdy.test",
    "api_key": "jdy-key",
    "app_id": "app-1",
    "entry_id": "entry-orders",
    "mapping": MAPPING,
    "rate": 20,
}


def app_with(sqlite_url: str, targets: dict[str, Any]) -> Orderbus:
    return quick_app(sqlite_url, targets=targets)


def finance_message(engine: Engine) -> Delivery:
    """The router's message for the finance system, for a paid order."""
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(external_id="JDY-1"), message_id="m-jdy-1"))
    [message] = outbox_deliveries(engine, outbox.c.message_id.like("%-finance"))
    return message


def consumer(sqlite_url: str, fake: FakeJiandaoyun) -> DeliveryConsumer:
    return app_with(sqlite_url, {"finance": JDY}).delivery_consumer(
        "finance", transport=httpx.MockTransport(fake)
    )


def test_a_paid_order_lands_once_with_its_fields_mapped(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = FakeJiandaoyun()
    message = finance_message(sqlite_engine)
    finance = consumer(sqlite_url, fake)
    finance.handle(message)
    [record] = fake.records.values()
    number = json.loads(message.body)["order_number"]
    assert record["_widget_1001"] == {"value": number}
    assert record["_widget_1003"] == {"value": "13912345678"}
    assert record["_widget_1004"] == {"value": 30.5}  # a number, exactly 30.50
    lines = record["_widget_1005"]["value"]
    assert [(r["_widget_1006"]["value"], r["_widget_1007"]["value"]) for r in lines] == [
        ("SKU-A", 2),
        ("SKU-B", 1),
    ]
    # The same message again (a redelivery): the inbox has it, nothing is sent.
    finance.handle(message)
    assert fake.requests == 1 and len(fake.records) == 1
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(inbox.c.response_status)) == 200


def test_a_rate_limit_burst_is_waited_out(sqlite_url: str, sqlite_engine: Engine) -> None:
    fake = FakeJiandaoyun()
    fake.limited = 2
    consumer(sqlite_url, fake).handle(finance_message(sqlite_engine))
    assert fake.requests == 3 and len(fake.records) == 1
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(inbox.c.attempts)) == 3


def test_a_crash_before_the_inbox_commit_leaves_one_record(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    fake = FakeJiandaoyun()
    message = finance_message(sqlite_engine)
    adapted = consumer(sqlite_url, fake).delivery
    headers = {"Idempotency-Key": message.message_id or ""}
    adapted.send(message.body, headers)  # delivered, then (say) the process died
    adapted.send(message.body, headers)  # the broker's redelivery
    assert fake.requests == 2 and len(fake.records) == 1  # one transaction_id


def test_a_refused_field_is_a_dead_letter_naming_it(sqlite_url: str, sqlite_engine: Engine) -> None:
    fake = FakeJiandaoyun()
    fake.refuse = "_widget_1003"
    with pytest.raises(DeliveryRejected) as caught:
        consumer(sqlite_url, fake).handle(finance_message(sqlite_engine))
    assert "customer.phone (_widget_1003)" in caught.value.detail
    assert fake.requests == 1  # a refusal is not retried


def test_an_unknown_adapter_stops_the_consumer_at_start(sqlite_url: str) -> None:
    app = app_with(sqlite_url, {"finance": {"adapter": "sap"}})
    with pytest.raises(ConfigurationError, match="no target adapter 'sap'"):
        app.delivery_consumer("finance")


def test_the_template_target() -> None:
    o = json.loads(order(external_id="T-1").to_wire())
    body = fill(
        {
            "orderNo": "SO-{{external_id}}",
            "buyer": {"mobile": "{{customer.phone}}"},
            "amount": "{{total|number}}",
            "amountText": "{{total}}",
            "lines": "{{items}}",
            "fixed": 1,
        },
        o,
    )
    assert body["orderNo"] == "SO-T-1" and body["buyer"] == {"mobile": "13912345678"}
    assert (body["amount"], body["amountText"], body["fixed"]) == (30.5, "30.50", 1)
    assert [line["sku"] for line in body["lines"]] == ["SKU-A", "SKU-B"]
    with pytest.raises(DeliveryRejected, match="exact number"):
        as_number("12345678901234567.89", "total")


def test_a_template_writes_counts_as_text_and_a_time_as_its_date() -> None:
    order = {
        "placed_at": "2026-11-11T00:00:01+08:00",
        "items": [{"quantity": 2, "unit_price": "9.90"}],
    }
    template = {
        "bill_date": "{{placed_at|date}}",
        "lines": {"$each": "items", "$item": {"qty": "{{quantity|text}}", "n": "{{quantity}}"}},
    }
    body = fill(template, order)
    assert body["bill_date"] == "2026-11-11"
    assert body["lines"] == [{"qty": "2", "n": 2}]


def test_a_reversal_becomes_a_record_of_its_own_form_once(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    """A cancel before shipment sends finance a reversal; Jiandaoyun with a
    form for reversals makes it a record there (the after-sale's fields
    mapped), once however often it is delivered."""
    reversal_form = {
        "entry_id": "entry-reversals",
        "mapping": {
            "_widget_2001": "order_number",
            "_widget_2002": "document",
            "_widget_2003": "after_sale.id",
            "_widget_2004": {"path": "after_sale.amount", "number": True},
        },
    }
    options = {**JDY, "documents": {"reversal": reversal_form}}
    fake = FakeJiandaoyun()
    router = RouterService(sqlite_engine, build_topology(Settings(namespace="t")))
    router.handle(delivery_for(order(external_id="JDY-9", status="paid"), message_id="m-1"))
    router.handle(
        delivery_for(order(external_id="JDY-9", status="cancelled", version=2), message_id="m-2")
    )
    [message] = outbox_deliveries(sqlite_engine, outbox.c.message_id.like("%-reversal-%"))
    finance = app_with(sqlite_url, {"finance": options}).delivery_consumer(
        "finance", transport=httpx.MockTransport(fake)
    )
    finance.handle(message)
    finance.handle(message)  # a redelivery: the inbox, and Jiandaoyun's transaction id
    [record] = fake.records.values()
    assert record["_entry"] == "entry-reversals"
    assert record["_widget_2002"] == {"value": "reversal"}
    assert record["_widget_2003"] == {"value": "status-cancel"}
    assert record["_widget_2004"] == {"value": 30.5}
