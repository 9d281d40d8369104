"""A seller's day for the console's tests: orders routed by the real router
and delivered by the real consumers (the systems faked at the transport),
a group of finance refusals for an unknown SKU, and a large order held for
two approvals. No mocks: every record is the one the pipeline writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine, select, update

from admin_api.deadletters import DeadLetterRecorder
from canonical.envelope import H_ATTEMPT, H_DETAIL, H_REASON, H_SOURCE_QUEUE
from infra.mappings import MappingCache
from infra.messages import H_ORIGINAL_EXCHANGE, H_ORIGINAL_ROUTING_KEY, parse_delivery
from infra.settings import Settings
from infra.tables import dead_letters, outbox, stock_pushes
from infra.topology import build_topology
from infra.transports import HttpxTransport
from router.approval import HoldRules
from router.dedup import Outcome
from router.fanout import Fanout
from router.mapping_gate import MappingGate
from router.service import RouterService
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy
from tests.factories import delivery_for, delivery_from_outbox, order

PHONE = "13912345678"
RULES = HoldRules(
    amount_above={"CNY": Decimal("5000.00")}, second_approval_above={"CNY": Decimal("10000.00")}
)
TARGETS = ("warehouse", "finance", "notification")


def _accepting(target: str) -> HttpDelivery:
    client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(201)))
    return HttpDelivery(
        target, f"http://{target}.test/orders", HttpxTransport(client), RetryPolicy(1, 0, 0)
    )


class SellersDay:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.topology = build_topology(Settings(namespace="t"))
        self.router = RouterService(engine, self.topology, hold_rules=RULES)
        self.recorder = DeadLetterRecorder(engine)
        self.consumers = {t: DeliveryConsumer(t, engine, _accepting(t)) for t in TARGETS}
        self.count = 0

    def add_order(
        self,
        channel: str = "taobao",
        *,
        phone: str = "13800138000",
        name: str = "王小明",
        total: str = "30.50",
        refused_sku: str | None = None,
    ) -> str:
        """Route one new paid order and deliver it to every system (finance
        refusing it for an unknown SKU when ``refused_sku``); its number."""
        self.count += 1
        external_id = f"{channel.upper()}-{self.count:04d}"
        changes: dict[str, Any] = {
            "channel": channel,
            "external_id": external_id,
            "customer": {"name": name, "phone": phone, "email": None},
            "placed_at": datetime.now(UTC).isoformat(),
        }
        if total != "30.50":  # one line at the whole price, no fees
            changes.update(
                items=[{"sku": "SKU-GOLD", "name": "金条", "quantity": 1, "unit_price": total}],
                shipping_fee="0",
                order_discount="0",
                total=total,
            )
        self.router.handle(delivery_for(order(**changes), message_id=f"{channel}.{external_id}"))
        with self.engine.connect() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    select(outbox).where(outbox.c.message_id.like("OB%")).order_by(outbox.c.id)
                ).mappings()
            ]
        number = ""
        for row in rows:
            body = json.loads(row["body"])
            if body.get("external_id") != external_id:
                continue
            number = body["order_number"]
            target = row["message_id"].rsplit("-", 1)[1]
            self._published(row["id"])
            if target == "finance" and refused_sku:
                self._refuse(row, refused_sku)
            elif target in self.consumers:
                self.consumers[target].handle(delivery_from_outbox(row, f"t.{target}"))
        if not number:  # held: nothing in the outbox yet
            from infra.tables import orders

            with self.engine.connect() as conn:
                number = (
                    conn.scalar(
                        select(orders.c.order_number).where(orders.c.external_id == external_id)
                    )
                    or ""
                )
        return number

    def add_unmapped(self, channel: str = "douyin", sku: str = "DY-HAT") -> str:
        """A new paid order from a channel that requires mappings, with a SKU
        nobody mapped: the router holds it (router/mapping_gate.py); its number."""
        self.count += 1
        gate = MappingGate.configured(
            MappingCache(self.engine, {channel}, interval=0),
            {channel},
            {"warehouse", "finance"},
            Fanout(),
        )
        router = RouterService(self.engine, self.topology, mapping_gate=gate)
        line = {"sku": sku, "name": "渔夫帽", "quantity": 1, "unit_price": "25.00"}
        held = order(
            channel=channel, external_id=f"DY-{self.count:04d}", items=[line], total="30.50"
        )
        result = router.route(*parse_delivery(delivery_for(held)))
        assert result.outcome is Outcome.HELD
        return str(result.order_number)

    def add_refused_by_router(self, channel: str = "web-shop") -> int:
        """An order whose total does not add up: the router refuses it, the
        bus dead-letters it; the dead letter's id."""
        self.count += 1
        bad = order(channel=channel, external_id=f"BAD-{self.count:04d}", total="1.00")
        message_id = f"{channel}.bad-{self.count}"
        error = self.router.handle_batch([delivery_for(bad, message_id=message_id)])[0]
        assert error is not None
        letter = delivery_for(bad, message_id=message_id, queue="t.router.dlq")
        letter.headers.update(
            {
                H_ATTEMPT: 1,
                H_REASON: "validation_failed",
                H_DETAIL: str(error),
                H_SOURCE_QUEUE: "t.router",
                H_ORIGINAL_EXCHANGE: "t.orders",
                H_ORIGINAL_ROUTING_KEY: f"ingest.{channel}",
            }
        )
        self.recorder.handle(letter)
        with self.engine.connect() as conn:
            found = conn.scalar(
                select(dead_letters.c.id).where(dead_letters.c.message_id == message_id)
            )
        assert found is not None
        return int(found)

    def _published(self, row_id: int) -> None:
        """What the outbox relay records once RabbitMQ confirmed the message."""
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox).where(outbox.c.id == row_id).values(published_at=datetime.now(UTC))
            )

    def _refuse(self, row: dict[str, Any], sku: str) -> None:
        headers = {
            H_ATTEMPT: 1,
            H_REASON: "delivery_rejected",
            H_DETAIL: f"finance rejected the order with 422: SKU {sku} is not a material code",
            H_SOURCE_QUEUE: "t.finance",
            H_ORIGINAL_EXCHANGE: "t.orders",
            H_ORIGINAL_ROUTING_KEY: "deliver.finance",
        }
        self.recorder.handle(delivery_from_outbox(row, "t.finance.dlq", headers))


def seed(engine: Engine) -> dict[str, Any]:
    """Today's 14 orders: 9 delivered over three channels, one of them the
    buyer with phone 13912345678; 3 refused by finance for the same unknown
    SKU; one large order held for two approvals; and that buyer's order
    again from another channel, held as a suspected duplicate."""
    day = SellersDay(engine)
    facts: dict[str, Any] = {"day": day}
    for i, channel in enumerate(["taobao", "jd", "pinduoduo"] * 3):
        number = day.add_order(
            channel,
            phone=PHONE if i == 4 else f"1380013{i:04d}",
            name="张伟" if i == 4 else "王小明",
        )
        if i == 4:
            facts["phone_order"], facts["phone_channel"] = number, channel
    facts["refused"] = [day.add_order("jd", refused_sku="TB-778") for _ in range(3)]
    facts["large"] = day.add_order("taobao", total="12800.00", name="赵大客户")
    # The same buyer and basket again, from another channel minutes later.
    facts["lookalike"] = day.add_order("youzan", phone=PHONE, name="张伟")
    _stock_told(engine)
    return facts


def _stock_told(engine: Engine) -> None:
    """What the stock pusher leaves after a morning: two listings told, one
    waiting for its change to go out, one a channel refused ten times."""
    now = datetime.now(UTC)
    rows = [
        ("taobao", "TB-TEA-SET", 12, 12, 0, None),
        ("jd", "100012043978", 5, 5, 0, None),
        ("jd", "100012049999", 3, 4, 0, None),
        ("pinduoduo", "PDD-CUP", 8, None, 10, "拼多多: 商品不存在 (sku_id 不属于本店)"),
    ]
    with engine.begin() as conn:
        conn.execute(
            stock_pushes.insert(),
            [
                {"channel": c, "platform_sku": sku, "quantity": q, "as_of": now,
                 "pushed_quantity": told, "pushed_at": now if told is not None else None,
                 "attempts": tries, "last_error": error}
                for c, sku, q, told, tries, error in rows
            ],
        )  # fmt: skip
