"""A deterministic workload: realistic orders of about 1.5 KB from several
channels, with a configurable share of duplicates and of invalid orders.

The same seed gives the same orders, message ids and order of arrival, so two
runs measure the same thing.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from canonical.envelope import Envelope
from canonical.order import OrderStatus
from router.fanout import targets_for

CHANNELS = ("tmall", "jd", "pinduoduo", "douyin", "youzan", "mini-program", "shopify", "store-sz")
CITIES = (
    ("广东省", "深圳市", "南山区", "518057"),
    ("浙江省", "杭州市", "西湖区", "310012"),
    ("上海市", "上海市", "浦东新区", "200120"),
    ("北京市", "北京市", "朝阳区", "100020"),
    ("四川省", "成都市", "武侯区", "610041"),
)
PRODUCTS = (
    ("TEA-LJ-250", "西湖龙井 250g 礼盒装", "168.00"),
    ("TEA-PE-357", "云南普洱熟茶饼 357g", "98.50"),
    ("CUP-GL-300", "双层玻璃杯 300ml", "39.90"),
    ("SET-CE-6", "青花瓷茶具六件套", "259.00"),
    ("HON-AC-500", "洋槐蜂蜜 500g", "45.00"),
    ("NUT-MX-750", "每日坚果 30 袋装", "79.90"),
)


@dataclass(frozen=True)
class Message:
    """One input as a connector would publish it to the router."""

    message_id: str
    channel: str
    body: bytes
    headers: dict[str, object]
    external_id: str
    valid: bool


@dataclass
class Workload:
    orders: int  # unique orders
    duplicate_rate: float = 0.05
    invalid_rate: float = 0.01
    seed: int = 20261111
    messages: list[Message] = field(default_factory=list)
    expected: dict[str, set[str]] = field(default_factory=dict)  # target -> external ids

    def build(self) -> Workload:
        rng = random.Random(self.seed)
        base = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
        unique: list[Message] = []
        for n in range(self.orders):
            channel = CHANNELS[n % len(CHANNELS)]
            valid = rng.random() >= self.invalid_rate
            external_id = f"{channel.upper()}-{n:08d}"
            order = _order(rng, channel, external_id, base, valid)
            body = json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode()
            envelope = Envelope.new(channel, f"bench-{self.seed}-{n}")
            unique.append(
                Message(
                    envelope.message_id,
                    channel,
                    body,
                    envelope.headers(),
                    external_id,
                    valid,
                )
            )
            if valid:
                for target in targets_for(OrderStatus.PAID, None):
                    self.expected.setdefault(target, set()).add(external_id)
        messages = list(unique)
        for k in range(int(self.orders * self.duplicate_rate)):
            # The channel sends an order again (a webhook retry): a new
            # message id, the same order.
            original = rng.choice(unique)
            envelope = Envelope.new(original.channel, f"bench-{self.seed}-dup-{k}")
            position = rng.randrange(len(messages) + 1)
            messages.insert(
                position,
                Message(
                    envelope.message_id,
                    original.channel,
                    original.body,
                    envelope.headers(),
                    original.external_id,
                    original.valid,
                ),
            )
        self.messages = messages
        return self

    @property
    def unique_valid(self) -> int:
        return len(set().union(*self.expected.values())) if self.expected else 0


def _order(
    rng: random.Random, channel: str, external_id: str, base: datetime, valid: bool
) -> dict[str, object]:
    province, city, district, postal = rng.choice(CITIES)
    lines: list[dict[str, object]] = []
    items_total = Decimal("0")
    for _ in range(rng.randint(8, 12)):
        sku, name, price = rng.choice(PRODUCTS)
        quantity = rng.randint(1, 3)
        items_total += Decimal(price) * quantity
        lines.append({"sku": sku, "name": name, "quantity": quantity, "unit_price": price})
    shipping = Decimal("0.00") if items_total >= 99 else Decimal("8.00")
    total = items_total + shipping
    if not valid:
        total += Decimal("1.00")  # does not add up: the router rejects it
    placed = base + timedelta(seconds=rng.randint(0, 86_399))
    return {
        "channel": channel,
        "shop": f"{channel}-flagship",
        "external_id": external_id,
        "status": OrderStatus.PAID.value,
        "version": 1,
        "currency": "CNY",
        "customer": {
            "name": rng.choice(("王小明", "李娜", "张伟", "刘洋", "陈静")),
            "phone": f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}",
            "email": f"buyer{rng.randint(1000, 999_999)}@example.com",
        },
        "shipping_address": {
            "country": "CN",
            "province": province,
            "city": city,
            "district": district,
            "street": (
                f"科技园路 {rng.randint(1, 999)} 号 {rng.randint(1, 30)} 栋 "
                f"{rng.randint(101, 2808)} 室"
            ),
            "postal_code": postal,
        },
        "items": lines,
        "shipping_fee": str(shipping),
        "order_discount": "0.00",
        "total": str(total),
        "placed_at": placed.isoformat(),
        "note": rng.choice(
            (
                "请尽快发货，谢谢！工作日白天送货上门，联系不上请放快递柜。",
                "Gift wrapping please; deliver after 6 pm on weekdays.",
                "发票抬头：深圳市某某科技有限公司，税号 91440300MA5XXXXXXX。",
            )
        ),
    }
