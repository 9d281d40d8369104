"""What the records say in English, the console says in the viewer's words:
why an order is held, and an event of its timeline."""

from __future__ import annotations

from console import story
from console.hold_reasons import reasons_in_words
from console.i18n import gettext_for

zh = gettext_for("zh-CN")


def test_each_kind_of_hold_reason_is_said_in_chinese() -> None:
    reason = (
        "suspected duplicate of OB1 from channel jd: same phone, items, total, placed 3 min apart; "
        "total 12800.00 CNY above 10000.00: two approvals needed; "
        "shipping address without city, street; first order from a new customer; "
        "SKU not mapped: DY-HAT, DY-CAP; something nobody wrote a rule for"
    )
    assert reasons_in_words(zh, reason) == [
        "与来自 jd 的订单 OB1 相似（手机号、商品明细、金额相同，相隔 3 分钟）",
        "订单金额 12800.00 CNY 超过 10000.00：需要两位不同的审批人批准",
        "收货地址缺少城市、详细地址",
        "新客户的首单",
        "平台商品编码 DY-HAT, DY-CAP 还没有映射：请在商品映射页添加映射，然后发出可以通过的订单",
        "something nobody wrote a rule for",  # shown as it is, never dropped
    ]


def test_timeline_events_read_as_sentences() -> None:
    delivered = {
        "kind": "delivered",
        "facts": {"target": "warehouse", "status": 201, "attempts": 2},
    }
    assert story.sentence(zh, delivered) == "仓库已接收（返回 201，共尝试 2 次）"
    shipped = {
        "kind": "status",
        "facts": {"status": "shipped", "carrier": "SF", "tracking_number": "SF123"},
    }
    assert story.sentence(zh, shipped) == "状态：已发货 · 快递 SF，运单号 SF123"
    stuck = {
        "kind": "dead_letter",
        "facts": {"reason": "delivery_rejected"},
        "detail": "finance rejected: SKU X9 unknown",
    }
    assert story.sentence(zh, stuck) == "卡住了，需要人工处理：接收系统不认识的商品编码"
    assert story.sentence(zh, {"kind": "something new", "event": "as recorded"}) == "as recorded"
    unmapped = {
        "kind": "held",
        "detail": "SKU not mapped: DY-HAT",
        "facts": {"cause": "sku_not_mapped"},
    }
    assert story.sentence(zh, unmapped) == "已暂扣：平台商品编码 DY-HAT 还没有映射"
    assert story.sentence(zh, {"kind": "held", "facts": {}}) == "暂扣待审批"
    mapped = {"kind": "delivered", "facts": {"target": "finance", "mapping_version": 3}}
    assert story.sentence(zh, mapped).endswith("按映射表第 3 版转换商品编码")


def test_an_after_sales_document_reads_as_a_sentence() -> None:
    facts: dict[str, object] = {
        "target": "warehouse", "document": "intercept", "after_sale": "RF-1", "sent": True,
    }  # fmt: skip
    sent = {"kind": "document", "facts": facts}
    assert story.sentence(zh, sent) == "拦截单（停止拣货） 发往仓库（售后单 RF-1）"
    waiting = {"kind": "document", "facts": {**facts, "document": "refund", "sent": False}}
    assert story.sentence(zh, waiting).endswith("（售后单 RF-1） · 尚未发出")
