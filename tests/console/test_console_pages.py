"""The console as its users meet it, in Debian's Chromium: log in, find an
order by the phone's last 4 digits and read its story, what a viewer sees,
clear a stuck group after its dry run, two approvers for a large order,
balance the day, watch the dashboard take a new order, switch language,
and a form without its CSRF token refused. Each test saves a screenshot
(tests/console/screenshots/, git-ignored) to look at.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import expect
from sqlalchemy import select

from infra.tables import dead_letters, holds, orders
from tests.console.conftest import REFRESH_SECONDS, LiveConsole, Screen
from tests.console.seed import PHONE

PAGE_BUDGET = 500 * 1024  # a typical page with its assets


def test_log_in_find_an_order_by_phone_tail_and_read_its_timeline(
    screen: Screen, live_console: LiveConsole
) -> None:
    weights: list[int] = []
    screen.page.on("response", lambda r: weights.append(len(r.body())) if r.ok else None)
    screen.log_in(live_console.keys["alice"])
    expect(screen.page.locator("h1")).to_have_text("你要做什么？")
    screen.go("/console/orders")
    loaded = sum(weights)
    assert loaded < PAGE_BUDGET, f"the order page and its assets weigh {loaded} bytes"
    screen.page.fill("input[name=q]", PHONE[-4:])
    screen.click("button:has-text('查询')")
    assert "请同时选择渠道或日期" in screen.page.inner_text(
        "main"
    ) or "还需要选择渠道或日期" in screen.page.inner_text("main")
    screen.page.select_option("select[name=channel]", live_console.facts["phone_channel"])
    screen.click("button:has-text('查询')")
    number = live_console.facts["phone_order"]
    screen.click(f"a:has-text('{number}')")
    screen.page.wait_for_url(f"**/orders/{number}")
    story = screen.page.inner_text("main")
    channel = live_console.facts["phone_channel"]
    assert f"收到来自 {channel} 的订单" in story
    assert "校验通过，作为新订单受理" in story
    assert "仓库已接收" in story and "财务（ERP）已接收" in story
    assert "仓库已收到订单，将安排发货。" in story  # what to tell the customer
    assert PHONE in story  # an operator sees the phone in full
    assert "¥30.50" in story
    screen.shot("order-timeline")


def test_a_viewer_sees_phones_names_and_addresses_masked(
    screen: Screen, live_console: LiveConsole
) -> None:
    screen.log_in(live_console.keys["客服小李"])
    number = live_console.facts["phone_order"]
    for path in ("/console/orders", f"/console/orders/{number}", "/console/approvals"):
        screen.go(path)
        html = screen.page.content()
        assert PHONE not in html and "张伟" not in html and "科技园南路" not in html, path
    screen.go(f"/console/orders/{number}")
    assert "139****5678" in screen.page.inner_text("main")
    assert "张*" in screen.page.inner_text("main")
    screen.shot("viewer-masked")


def test_retry_a_dead_letter_group_after_its_dry_run(
    screen: Screen, live_console: LiveConsole
) -> None:
    screen.log_in(live_console.keys["alice"])
    screen.go("/console/exceptions")
    screen.shot("exceptions")
    screen.click("a:has-text('接收系统不认识的商品编码')")
    assert "在接收系统里添加该商品编码" in screen.page.inner_text("main")
    screen.page.fill("input[name=note]", "金蝶里已补上物料 TB-778")
    screen.click("#retry-group")
    assert "将在后台重试 3 条待处理异常" in screen.page.inner_text("#dry-run")
    screen.shot("retry-dry-run")
    with live_console.engine.connect() as conn:  # the dry run changed nothing
        assert set(conn.scalars(select(dead_letters.c.status))) == {"open"}
    screen.click("#confirm-retry")
    screen.page.wait_for_url("**/exceptions/jobs/*")
    expect(screen.page.locator("#job-status")).to_have_text("已完成", timeout=20_000)
    assert "已重试 3 / 3 条" in screen.page.inner_text("#job-count")
    screen.shot("retry-job-done")
    with live_console.engine.connect() as conn:
        assert set(conn.scalars(select(dead_letters.c.status))) == {"retried"}


def test_a_large_order_needs_two_different_operators(
    screen: Screen, second_screen: Screen, live_console: LiveConsole
) -> None:
    screen.log_in(live_console.keys["alice"])
    screen.go("/console/approvals")
    number = live_console.facts["large"]
    assert "需要两位不同的审批人批准" in screen.page.inner_text("main")
    screen.click(f"a:has-text('{number}')")
    screen.page.fill("form[action$='/approve'] input[name=note]", "客户已电话确认")
    screen.click("#approve")
    assert "alice 已批准一次，还需另一位审批人批准。" in screen.page.inner_text("main")
    screen.click("#approve")
    assert "你已经批准过了" in screen.page.inner_text("[role=alert]")
    screen.shot("approval-same-person-refused")
    large = holds.c.order_number == number
    with live_console.engine.connect() as conn:
        assert conn.scalar(select(holds.c.status).where(large)) == "open"
    second_screen.log_in(live_console.keys["bob"])
    with live_console.engine.connect() as conn:
        hold_id = conn.scalar(select(holds.c.id).where(large))
    second_screen.go(f"/console/approvals/{hold_id}")
    second_screen.click("#approve")
    expect(second_screen.page.locator("h1")).to_contain_text("已批准")
    second_screen.shot("approval-second-person")
    with live_console.engine.connect() as conn:
        row = conn.execute(
            select(holds.c.status, holds.c.approved_by, holds.c.decided_by).where(large)
        ).one()
    assert tuple(row) == ("released", "alice", "bob")


def _export(ids: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["订单号", "external_id"])
    for i in ids:
        writer.writerow(["x", i])
    return out.getvalue().encode("gbk")


def test_reconciliation_balances_for_the_seeded_day(
    screen: Screen, live_console: LiveConsole, tmp_path: Any
) -> None:
    screen.log_in(live_console.keys["alice"])
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    screen.go(f"/console/reconciliation?day={today}")
    verdict = screen.page.inner_text("#verdict")
    assert verdict.startswith("已对平"), verdict
    totals = screen.page.inner_text("#balance tfoot")
    assert re.search(r"全部渠道\s+14\s+9\s+0\s+2\s+3\s+0\s+0", totals), totals
    with live_console.engine.connect() as conn:
        received = sorted(
            conn.scalars(select(orders.c.external_id).where(orders.c.channel == "jd"))
        )
    export = tmp_path / "jd.csv"  # the platform's export: one we never got, one it lacks
    export.write_bytes(_export(["JD-9999", *received[1:]]))
    screen.page.fill("input[name=channel]", "jd")
    screen.page.set_input_files("input[name=export]", str(export))
    screen.click("button:has-text('比对')")
    never_received = screen.page.inner_text("#never-received")
    not_exported = screen.page.inner_text("#not-exported")
    assert never_received == "JD-9999" and not_exported == received[0]
    screen.shot("reconciliation")


def test_the_dashboard_shows_a_new_order_within_its_refresh_interval(
    screen: Screen, live_console: LiveConsole
) -> None:
    screen.log_in(live_console.keys["客服小李"])
    screen.go("/console/dashboard")
    before = int(screen.page.inner_text("#orders-today"))
    assert before == 14
    screen.shot("dashboard")
    live_console.facts["day"].add_order("douyin")
    started = time.monotonic()
    expect(screen.page.locator("#orders-today")).to_have_text(
        str(before + 1), timeout=(REFRESH_SECONDS * 2 + 2) * 1000
    )
    assert time.monotonic() - started <= REFRESH_SECONDS * 2 + 2
    assert "douyin" in screen.page.inner_text("#panels")
    screen.shot("dashboard-after-new-order")


def test_switch_between_chinese_and_english(screen: Screen, live_console: LiveConsole) -> None:
    screen.log_in(live_console.keys["alice"])
    expect(screen.page.locator("header")).to_contain_text("订单查询")
    screen.click("header a:has-text('English')")
    expect(screen.page.locator("header")).to_contain_text("Find an order")
    expect(screen.page.locator("h1")).to_have_text("What do you want to do?")
    screen.go("/console/exceptions")
    assert "SKU not known to the receiving system" in screen.page.inner_text("main")
    screen.shot("english")
    screen.click("header a:has-text('中文')")
    expect(screen.page.locator("header")).to_contain_text("异常处理")


def test_a_form_without_its_csrf_token_is_refused(
    screen: Screen, live_console: LiveConsole
) -> None:
    screen.log_in(live_console.keys["alice"])
    number = live_console.facts["large"]
    screen.go("/console/approvals")
    screen.click(f"a:has-text('{number}')")
    screen.page.evaluate(
        "document.querySelectorAll('form[action$=\"/approve\"] input[name=csrf]')"
        ".forEach(e => e.remove())"
    )
    screen.click("#approve")
    expect(screen.page.locator("h1")).to_have_text("表单已过期")
    screen.shot("csrf-refused")
    with live_console.engine.connect() as conn:
        held = conn.execute(
            select(holds.c.status, holds.c.approved_by).where(holds.c.order_number == number)
        ).one()
    assert tuple(held) == ("open", None)


def test_log_out_ends_the_session(screen: Screen, live_console: LiveConsole) -> None:
    screen.log_in(live_console.keys["alice"])
    cookies = screen.page.context.cookies()
    session = next(c for c in cookies if c["name"] == "orderbus_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    screen.click("button:has-text('退出')")
    screen.page.wait_for_url("**/console/login")
    screen.page.context.add_cookies([session])  # the old cookie, replayed
    screen.go("/console/orders")
    assert "/console/login" in screen.page.url


def test_swagger_ui_is_served_from_local_files(screen: Screen) -> None:
    screen.go("/docs")
    screen.page.wait_for_selector(".swagger-ui .info", timeout=20_000)
    assert "orderbus admin" in screen.page.inner_text(".swagger-ui .info")
    screen.shot("swagger")


def test_a_suspected_duplicate_is_shown_beside_its_lookalike_and_rejected_with_a_note(
    screen: Screen, live_console: LiveConsole
) -> None:
    screen.log_in(live_console.keys["bob"])
    screen.go("/console/approvals")
    screen.click(f"a:has-text('{live_console.facts['lookalike']}')")
    main = screen.page.inner_text("main")
    assert "相似的订单" in main and live_console.facts["phone_order"] in main
    assert "与来自 jd 的订单" in main
    screen.shot("approval-duplicate-side-by-side")
    screen.page.fill("form[action$='/reject'] input[name=note]", "同一客户重复下单，已与客户确认")
    screen.click("#reject")
    expect(screen.page.locator("h1")).to_contain_text("已驳回")


def test_edit_and_retry_shows_errors_by_field_then_retries(
    screen: Screen, live_console: LiveConsole
) -> None:
    letter = live_console.facts["day"].add_refused_by_router()
    screen.log_in(live_console.keys["alice"])
    screen.go(f"/console/exceptions/letters/{letter}")
    assert "订单不符合业务规则" in screen.page.inner_text("main")
    body = screen.page.input_value("textarea[name=body]")
    screen.page.fill("textarea[name=body]", body.replace('"total": "1.00"', '"total": "abc"'))
    screen.page.fill("form[action$='/edit'] input[name=note]", "按平台订单改正金额")
    screen.click("button:has-text('校验并重试')")
    errors = screen.page.inner_text("ul.fielderr")
    assert "订单金额 (total)" in errors
    assert screen.page.input_value("form[action$='/edit'] input[name=note]") == "按平台订单改正金额"
    screen.shot("edit-and-retry-field-errors")
    screen.page.fill("textarea[name=body]", body.replace('"total": "1.00"', '"total": "30.50"'))
    screen.page.fill("form[action$='/edit'] input[name=note]", "按平台订单改正金额")
    screen.click("button:has-text('校验并重试')")
    expect(screen.page.locator("h1")).to_contain_text("已重试")
    with live_console.engine.connect() as conn:
        assert (
            conn.scalar(select(dead_letters.c.status).where(dead_letters.c.id == letter))
            == "retried"
        )


def test_every_page_opens_for_its_role(screen: Screen, live_console: LiveConsole) -> None:
    """The pages no other test walks through: each renders, in Chinese, with
    no request beyond 127.0.0.1 (screenshots kept to look at)."""
    screen.log_in(live_console.keys["root"])
    for path, name, heading in (
        ("/console/", "home", "你要做什么？"),
        ("/console/orders", "orders", "订单查询"),
        ("/console/reports", "reports", "报表"),
        ("/console/channels", "channels", "渠道与健康"),
        ("/console/admin", "admin", "API 密钥"),
        ("/console/exceptions/causes/sku_not_mapped", "cause", "接收系统不认识的商品编码"),
    ):
        screen.go(path)
        assert screen.page.locator("h1").first.inner_text().startswith(heading), path
        screen.shot(name)
    screen.go("/console/channels")
    told = screen.page.inner_text("main")
    assert "库存回传：各渠道已被告知的数量" in told and "商品不存在 (sku_id 不属于本店)" in told
    screen.go("/console/admin")
    screen.page.fill("input[name=name]", "仓库主管")
    screen.page.select_option("select[name=role]", "viewer")
    screen.click("button:has-text('创建密钥')")
    key = screen.page.inner_text("#new-key")
    assert key.startswith("obk_")
    screen.go("/console/admin")
    assert key not in screen.page.content()  # shown once
    assert "key.create" in screen.page.inner_text("main")  # and audited


def test_map_the_stuck_skus_by_form_and_spreadsheet_then_send_what_passes(
    screen: Screen, live_console: LiveConsole, tmp_path: Any
) -> None:
    held = live_console.facts["day"].add_unmapped("douyin", "DY-HAT")
    screen.log_in(live_console.keys["alice"])
    with live_console.engine.connect() as conn:
        hold_id = conn.scalar(select(holds.c.id).where(holds.c.order_number == held))
    screen.go(f"/console/approvals/{hold_id}")  # where the approvals list leads
    why = screen.page.inner_text("main")
    assert "平台商品编码 DY-HAT 还没有映射" in why
    screen.page.fill("form[action$='/approve'] input[name=note]", "先放行")
    screen.click("#approve")  # released by hand while unmapped: refused, naming the SKU
    assert "DY-HAT" in screen.page.inner_text("[role=alert]")
    assert screen.page.inner_text("h1 .badge") == "暂扣，等待映射"
    screen.shot("approval-unmapped")
    screen.click("text=打开商品映射页")
    screen.page.wait_for_url("**/console/mappings*")
    stuck = screen.page.inner_text("#dry-run")
    # three finance refusals, and the held order once for the warehouse, once for finance
    assert screen.page.locator("#dry-run .badge.bad").count() == 5 and "SKU-A" in stuck
    assert held in stuck and stuck.count("暂扣，等待映射") == 2
    sheet = tmp_path / "映射.csv"  # what an operator saves from Excel on a Chinese Windows
    sheet.write_bytes("平台SKU,内部SKU,数量,ERP物料编码\nSKU-A,TEA-A,1,MAT-A\n".encode("gbk"))
    screen.page.set_input_files("input[name=sheet]", str(sheet))
    screen.click("button:has-text('导入')")
    assert "已导入 1 条映射和 1 个编码" in screen.page.inner_text("[role=status]")
    for platform_sku, components, code in (("SKU-B", "CUP-B, 2", "MAT-B"), ("DY-HAT", "HAT", "")):
        screen.page.fill("input[name=platform_sku]", platform_sku)
        screen.page.fill("textarea[name=components]", components)
        screen.page.fill("input[name=finance_code]", code)
        screen.click("#save-mapping")
    preview = screen.page.inner_text("#dry-run")
    assert screen.page.locator("#dry-run .badge.ok").count() == 5
    assert screen.page.inner_text("#retry-passing") == "发出可以通过的 4 个"  # 1 order, 3 letters
    assert "SKU-A → MAT-A × 2 · 10.00" in preview and "SKU-B → MAT-B × 2 · 2.50" in preview
    assert "DY-HAT → HAT × 1 · 25.00" in preview
    screen.shot("mappings-dry-run")
    screen.click("#retry-passing")
    said = screen.page.inner_text("[role=status]")
    assert "已放行 1 个暂扣的订单，已重试 3 个卡住的投递" in said
    with live_console.engine.connect() as conn:
        assert set(conn.scalars(select(dead_letters.c.status))) == {"retried"}
        released = conn.scalar(select(holds.c.status).where(holds.c.order_number == held))
        assert released == "released"
    screen.go(f"/console/orders/{held}")
    timeline = screen.page.inner_text("main")
    assert "已暂扣：平台商品编码 DY-HAT 还没有映射" in timeline and "mapping added" in timeline
