"""The console in a real browser: the admin process (with the console
mounted, as `orderbus run admin` serves it) on a free port of 127.0.0.1
over a private PostgreSQL schema seeded by the real pipeline, and Debian's
Chromium driven by Playwright (never Playwright's own browser download).

Every request the page makes to anything but 127.0.0.1 is refused and
recorded, and each test asserts there was none: the console works offline.
In CI (ORDERBUS_REQUIRE_SERVICES=1) a missing browser fails the tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from sqlalchemy import Engine

from admin_api import keys
from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.retry_jobs import RetryJobWorker
from console.app import create_console
from console.web import ConsoleOptions
from infra.database import make_engine
from tests import services
from tests.console.seed import seed

SCREENSHOTS = Path(__file__).parent / "screenshots"
ROOT_TOKEN = "console-root-token-0123456789"
BROWSER_FLAGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REFRESH_SECONDS = 3


def chromium_path() -> str | None:
    return os.environ.get("ORDERBUS_TEST_CHROMIUM") or shutil.which("chromium")


@dataclass
class LiveConsole:
    url: str
    engine: Engine
    facts: dict[str, Any]
    keys: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_console(postgres_url: str) -> Iterator[LiveConsole]:
    engine = make_engine(postgres_url)
    facts = seed(engine)
    made: dict[str, str] = {}
    with engine.begin() as conn:
        for name, role in (("客服小李", "viewer"), ("alice", "operator"), ("bob", "operator")):
            made[name] = keys.create(conn, name, role, "test")[1]
    made["root"] = ROOT_TOKEN
    app = create_admin_app(
        engine,
        KeyAuth(engine, {"root": ROOT_TOKEN}),
        facts["day"].topology,
        mapping_required=frozenset({"douyin"}),
    )
    options = ConsoleOptions(dashboard_refresh_seconds=REFRESH_SECONDS)
    app.mount("/console", create_console(app.state.admin, options))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    stop = threading.Event()
    worker = threading.Thread(target=RetryJobWorker(engine).run, args=(stop,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the admin process did not start"
        time.sleep(0.05)
    try:
        yield LiveConsole(f"http://127.0.0.1:{port}", engine, facts, made)
    finally:
        stop.set()
        server.should_exit = True
        serving.join(10)
        worker.join(10)
        engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        if services.services_required():
            pytest.fail(
                "no Chromium (apt-get install chromium) and ORDERBUS_REQUIRE_SERVICES is set"
            )
        pytest.skip("no Chromium: apt-get install chromium fonts-noto-cjk")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=path, args=BROWSER_FLAGS)
        yield found
        found.close()


@dataclass
class Screen:
    """One person at a browser: their page, what left 127.0.0.1, their shots."""

    page: Any
    base: str
    outside: list[str]

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def click(self, selector: str) -> None:
        """Click what leads to another page (a link, a form's button) and wait
        until that page has loaded, so that nothing is read from the old one."""
        with self.page.expect_navigation():
            self.page.click(selector)

    def log_in(self, key: str) -> None:
        self.go("/console/login")
        self.page.fill("input[name=key]", key)
        self.click("button[type=submit]")
        assert "/login" not in self.page.url, self.page.content()[:2000]


@pytest.fixture
def screen(browser: Any, live_console: LiveConsole) -> Iterator[Screen]:
    yield from _screen(browser, live_console)


def _screen(browser: Any, live: LiveConsole) -> Iterator[Screen]:
    context = browser.new_context(
        locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1366, "height": 900}
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
        yield Screen(page, live.url, outside)
        assert outside == [], f"the page reached beyond 127.0.0.1: {outside}"
    finally:
        context.close()


@pytest.fixture
def second_screen(browser: Any, live_console: LiveConsole) -> Iterator[Screen]:
    """Another person, in their own browser context (their own cookies)."""
    yield from _screen(browser, live_console)
