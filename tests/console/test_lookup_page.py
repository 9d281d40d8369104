"""The customers' own lookup page (/track on the ingest process) in a real
browser on a phone-sized screen, over PostgreSQL: Chinese first, English one
tap away; the right tail shows the parcel and nothing personal; a run of
guesses gets the number locked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.database import make_engine
from infra.messages import parse_delivery
from infra.settings import Settings
from infra.topology import build_topology
from router.service import RouterService
from tests.console.conftest import SCREENSHOTS
from tests.factories import FakePublisher, delivery_for, order
from tests.live_server import serving

SHIPPED = {
    "carrier": "顺丰速运",
    "tracking_number": "SF1234567890",
    "shipped_at": "2026-11-12T09:30:00+08:00",
}
PERSONAL = ("李四", "13912345678", "lisi@example.com", "科技园南路", "南山区")


@dataclass
class LiveIngest:
    url: str


@pytest.fixture
def live_ingest(postgres_url: str) -> Iterator[LiveIngest]:
    engine = make_engine(postgres_url)
    settings = Settings(namespace="t", lookup={"answer_ms": 100, "failures_per_order": 5})
    router = RouterService(engine, build_topology(settings))
    for version, status in ((1, "paid"), (2, "shipped")):
        sent = order(external_id="TB-778899", status=status, version=version, shipment=SHIPPED)
        router.route(*parse_delivery(delivery_for(sent)))
    deps = IngestDeps(settings, engine, FakePublisher(), build_topology(settings))  # type: ignore[arg-type]
    try:
        with serving(create_ingest_app(deps)) as port:
            yield LiveIngest(f"http://127.0.0.1:{port}")
    finally:
        engine.dispose()


@pytest.fixture
def phone(browser: Any, live_ingest: LiveIngest) -> Iterator[Any]:
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    outside: list[str] = []

    def only_localhost(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_localhost)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
        assert outside == []
    finally:
        context.close()


def _look(page: Any, number: str, tail: str) -> None:
    page.fill("#order", number)
    page.fill("#phone_tail", tail)
    with page.expect_navigation():  # read nothing from the page before
        page.click("button[type=submit]")


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_customer_finds_the_parcel_in_chinese_and_english(
    phone: Any, live_ingest: LiveIngest
) -> None:
    phone.goto(live_ingest.url + "/track")
    assert phone.inner_text("h1") == "查询我的订单"
    _look(phone, "TB-778899", "5678")
    result = phone.inner_text("#result")
    assert "已发货" in result and "顺丰速运" in result and "SF1234567890" in result
    assert not [p for p in PERSONAL if p in phone.content()]
    _shot(phone, "lookup-zh")
    with phone.expect_navigation():
        phone.click("text=English")
    assert phone.inner_text("h1") == "Look up my order"
    _look(phone, "TB-778899", "5678")
    assert "Shipped" in phone.inner_text("#result")
    _shot(phone, "lookup-en")


def test_guessing_through_the_page_gets_locked_out(phone: Any, live_ingest: LiveIngest) -> None:
    phone.goto(live_ingest.url + "/track")
    for guess in range(5):
        _look(phone, "TB-778899", f"{guess:04d}")
        assert "没有找到这个订单" in phone.inner_text("[role=alert]")
    _look(phone, "TB-778899", "5678")  # the right one, too late
    assert "已暂时锁定" in phone.inner_text("[role=alert]")
    assert phone.locator("#result").count() == 0
    _shot(phone, "lookup-locked")
