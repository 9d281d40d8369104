"""The console's web rules, without a browser (tests/console drives one):
logging in and out, sessions that end when their key is revoked or they
expire, CSRF on every state-changing form, what a viewer may see and do,
redirects that stay inside the console, and what each page answers."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, select, update

from admin_api import keys
from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from console import charts
from console.app import create_console
from infra.tables import console_sessions, dead_letters, holds
from tests.console.seed import PHONE, seed

ROOT = "unit-console-root-token-0123456789"


@pytest.fixture
def day(sqlite_engine: Engine) -> dict[str, Any]:
    return seed(sqlite_engine)


@pytest.fixture
def app_keys(sqlite_engine: Engine, day: dict[str, Any]) -> dict[str, str]:
    with sqlite_engine.begin() as conn:
        return {
            name: keys.create(conn, name, role, "test")[1]
            for name, role in (("viewer", "viewer"), ("alice", "operator"))
        }


@pytest.fixture
def client(sqlite_engine: Engine, day: dict[str, Any]) -> Iterator[TestClient]:
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"root": ROOT}), day["day"].topology
    )
    app.mount("/console", create_console(app.state.admin))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def log_in(client: TestClient, key: str) -> str:
    """Log in; the session's CSRF token (read off a page, as a browser would)."""
    form = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/console/login", data={"csrf": token[1], "key": key}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text[:500]
    page = client.get("/console/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return csrf[1]


def test_a_page_asks_for_a_login_first_and_comes_back_after_it(client: TestClient) -> None:
    answer = client.get("/console/orders?q=5678", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/orders%3Fq%3D5678"


def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_console(
    client: TestClient,
) -> None:
    form = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/console/login", data={"csrf": token[1], "key": ROOT}, follow_redirects=False
    )
    cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith("orderbus_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Max-Age=28800" in cookie  # 8 hours, ORDERBUS_CONSOLE_SESSION_HOURS


def test_a_wrong_key_or_a_login_form_without_its_token_is_refused(client: TestClient) -> None:
    form = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    wrong = client.post("/console/login", data={"csrf": token[1], "key": "obk_nope"})
    assert wrong.status_code == 401 and "密钥不存在或已被吊销" in wrong.text
    forged = client.post("/console/login", data={"csrf": "guess", "key": ROOT})
    assert forged.status_code == 403
    assert "orderbus_session" not in client.cookies


def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    client: TestClient, sqlite_engine: Engine, day: dict[str, Any]
) -> None:
    csrf = log_in(client, ROOT)
    with sqlite_engine.connect() as conn:
        hold_id = conn.scalar(select(holds.c.id).where(holds.c.order_number == day["lookalike"]))
    for sent in ({}, {"csrf": "not-the-token"}):
        refused = client.post(f"/console/approvals/{hold_id}/reject", data={**sent, "note": "x"})
        assert refused.status_code == 403 and "表单已过期" in refused.text
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(holds.c.status).where(holds.c.id == hold_id)) == "open"
    done = client.post(
        f"/console/approvals/{hold_id}/reject", data={"csrf": csrf, "note": "重复下单"}
    )
    assert done.status_code == 200 and "已驳回" in done.text


def test_revoking_the_key_or_the_sessions_expiry_ends_it(
    client: TestClient, sqlite_engine: Engine, app_keys: dict[str, str]
) -> None:
    log_in(client, app_keys["alice"])
    assert client.get("/console/orders", follow_redirects=False).status_code == 200
    with sqlite_engine.begin() as conn:
        key_id = next(k["id"] for k in keys.listing(conn) if k["name"] == "alice")
        keys.revoke(conn, key_id, "test")
    assert client.get("/console/orders", follow_redirects=False).status_code == 303
    log_in(client, ROOT)
    with sqlite_engine.begin() as conn:
        conn.execute(
            update(console_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/console/orders", follow_redirects=False).status_code == 303


def test_log_out_ends_the_session_on_the_server(client: TestClient) -> None:
    csrf = log_in(client, ROOT)
    token = client.cookies.get("orderbus_session")
    client.post("/console/logout", data={"csrf": csrf})
    client.cookies.set("orderbus_session", token or "", path="/console")
    assert client.get("/console/orders", follow_redirects=False).status_code == 303


def _viewer_pages(sqlite_engine: Engine, day: dict[str, Any]) -> list[str]:
    with sqlite_engine.connect() as conn:
        letter = conn.scalar(select(dead_letters.c.id))
        hold = conn.scalar(select(holds.c.id).where(holds.c.order_number == day["lookalike"]))
    today = datetime.now(UTC).date().isoformat()
    return [
        "/console/",
        "/console/orders",
        f"/console/orders/{day['phone_order']}",
        f"/console/orders/{day['lookalike']}",
        "/console/exceptions",
        "/console/exceptions/causes/sku_not_mapped",
        f"/console/exceptions/letters/{letter}",
        "/console/approvals",
        f"/console/approvals/{hold}",
        f"/console/reconciliation?day={today}",
        "/console/reports?by=sku",
        "/console/dashboard",
        "/console/channels",
        "/console/mappings",
    ]


def test_a_viewer_sees_no_phone_name_or_street_on_any_page(
    client: TestClient, sqlite_engine: Engine, day: dict[str, Any], app_keys: dict[str, str]
) -> None:
    log_in(client, app_keys["viewer"])
    for path in _viewer_pages(sqlite_engine, day):
        page = client.get(path)
        assert page.status_code == 200, path
        for secret in (PHONE, "张伟", "王小明", "科技园南路"):
            assert secret not in page.text, (path, secret)
    assert "139****5678" in client.get(f"/console/orders/{day['phone_order']}").text
    # Searching by the phone the caller gave: the rows found show it masked;
    # only the search box keeps what the viewer typed.
    found = client.get("/console/orders", params={"q": PHONE}).text
    assert "139****5678" in found
    assert found.count(PHONE) == found.count(f'value="{PHONE}"') + found.count(f"q%3D{PHONE}")


def test_a_viewer_cannot_act_and_is_told_why(
    client: TestClient, sqlite_engine: Engine, app_keys: dict[str, str]
) -> None:
    csrf = log_in(client, app_keys["viewer"])
    with sqlite_engine.connect() as conn:
        letter = conn.scalar(select(dead_letters.c.id))
    refused = client.post(f"/console/exceptions/letters/{letter}/retry", data={"csrf": csrf})
    assert refused.status_code == 403 and "没有权限" in refused.text
    assert client.get("/console/admin").status_code == 403
    with sqlite_engine.connect() as conn:
        assert (
            conn.scalar(select(dead_letters.c.status).where(dead_letters.c.id == letter)) == "open"
        )


@pytest.mark.parametrize(
    "asked", ["https://evil.example/", "//evil.example/x", "/console\\\\evil", "/elsewhere"]
)
def test_a_login_never_sends_the_browser_outside_the_console(
    client: TestClient, asked: str
) -> None:
    form = client.get("/console/login", params={"next": asked})
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/console/login",
        params={"next": asked},
        data={"csrf": token[1], "key": ROOT},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/console/"


def test_english_and_another_time_zone_are_a_click_away(
    client: TestClient, day: dict[str, Any]
) -> None:
    log_in(client, ROOT)
    client.get("/console/language/en")
    client.get("/console/zone", params={"tz": "Europe/London"})
    page = client.get(f"/console/orders/{day['phone_order']}")
    assert "What happened" in page.text and "Times in Europe/London" in page.text
    client.get("/console/zone", params={"tz": "Mars/Olympus"})  # unknown: ignored
    client.get("/console/language/xx")
    assert "Times in Europe/London" in client.get("/console/").text


def test_pages_allow_only_the_consoles_own_files(client: TestClient) -> None:
    log_in(client, ROOT)
    page = client.get("/console/orders")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "http" not in re.sub(r"http://www.w3.org/2000/svg", "", page.text.split("<body", 1)[0])
    assert client.get("/console/static/htmx.min.js").status_code == 200


def test_chart_labels_are_escaped() -> None:
    svg = charts.horizontal_bars([("<script>alert(1)</script>", 3.0)], title="t")
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_downloads_are_spreadsheets_a_person_can_open(client: TestClient) -> None:
    log_in(client, ROOT)
    today = datetime.now(UTC).date().isoformat()
    text = client.get("/console/reconciliation/download", params={"day": today}).text
    assert text.startswith("\ufeffchannel,external_id,order_number,state,detail")
    book = client.get("/console/reports/download", params={"kind": "xlsx", "by": "channel"})
    sheet = load_workbook(io.BytesIO(book.content)).active
    assert sheet is not None
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert header == [
        "period",
        "channel",
        "orders",
        "units",
        "cancelled",
        "refunded",
        "currency",
        "amount",
    ]


def test_the_channels_page_says_when_credentials_expire(
    sqlite_engine: Engine, day: dict[str, Any]
) -> None:
    from console.web import ConsoleOptions

    soon = datetime.now(UTC) + timedelta(days=3, hours=1)
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"root": ROOT}), day["day"].topology
    )
    options = ConsoleOptions(channels=("douyin",), credentials_expire={"pinduoduo": soon})
    app.mount("/console", create_console(app.state.admin, options))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        log_in(c, ROOT)
        page = c.get("/console/channels").text
    assert "还剩 3 天" in page
    assert "douyin" in page  # configured, though it sent nothing yet


def test_the_channels_page_says_what_each_channel_was_told_of_its_stock(
    client: TestClient,
) -> None:
    log_in(client, ROOT)  # the day's seed: jd told 1 of 2 listings, pinduoduo's refused
    page = client.get("/console/channels").text
    assert "库存回传：各渠道已被告知的数量" in page
    assert "渠道拒收的库存回传" in page and "PDD-CUP" in page
    assert "拼多多: 商品不存在 (sku_id 不属于本店)" in page


def test_reports_give_the_exception_rate_of_the_period(client: TestClient) -> None:
    log_in(client, ROOT)
    page = client.get("/console/reports", params={"by": "sku"}).text
    assert "订单数 · 14" in page  # orders, not order lines, even by SKU
    assert "占订单 21.4%" in page  # 3 exceptions of 14 orders


def test_the_platforms_own_order_is_on_the_order_page_masked_for_a_viewer(
    client: TestClient, sqlite_engine: Engine, day: dict[str, Any], app_keys: dict[str, str]
) -> None:
    from infra import raw_payloads as raw
    from infra.tables import arrivals, orders

    number = day["phone_order"]
    with sqlite_engine.connect() as conn:
        order_id = conn.scalar(select(orders.c.id).where(orders.c.order_number == number))
        message_id = conn.scalar(
            select(arrivals.c.message_id).where(arrivals.c.order_id == order_id)
        )
    body = json.dumps({"receiver_mobile": PHONE, "tid": "JD-0005"}).encode()
    assert message_id is not None
    raw.keep(sqlite_engine, [message_id], "jd", {"x-sign": "secret"}, body)
    log_in(client, app_keys["viewer"])
    page = client.get(f"/console/orders/{number}").text
    assert "平台原始单" in page and PHONE not in page and "139****5678" in page
    log_in(client, ROOT)
    assert PHONE in client.get(f"/console/orders/{number}").text


def test_an_operator_sets_a_shops_erp_accounts_and_a_warehouse_rule_on_the_console(
    client: TestClient, app_keys: dict[str, str]
) -> None:
    csrf = log_in(client, app_keys["alice"])
    shop = {"csrf": csrf, "channel": "jd", "customer": "KH-JD", "warehouse": "WH-BJ"}
    assert client.post("/console/mappings/shops", data=shop).status_code == 200
    rule = {"csrf": csrf, "warehouse": "WH-SZ", "province": "广东", "priority": "5"}
    page = client.post("/console/mappings/rules", data=rule).text
    assert "KH-JD" in page and "WH-BJ" in page and "WH-SZ" in page
    refused = client.post("/console/mappings/rules", data={**rule, "csrf": "forged"})
    assert refused.status_code == 403
    carrier = {"csrf": csrf, "carrier": "顺丰速运", "system": "jd", "code": "467"}
    assert "467" in client.post("/console/mappings/carriers", data=carrier).text


def test_the_mapping_page_puts_its_sections_in_the_page_not_its_title(
    client: TestClient, app_keys: dict[str, str]
) -> None:
    log_in(client, app_keys["alice"])
    page = client.get("/console/mappings").text
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "<" not in title and "商品映射" in title
    main = page.split("<main>", 1)[1]
    for section in ('id="shops"', 'id="rules"', 'id="carriers"', 'id="dry-run"', 'id="mappings"'):
        assert section in main, section
