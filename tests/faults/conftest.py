"""The fault suite: ``ORDERBUS_FAULTS=full`` runs every scenario with
``ORDERBUS_FAULT_ORDERS`` orders (default 10,000); otherwise only the CI subset
(kill -9 of the router and of the consumers, a broker restart, the duplicate
flood, outbox ordering under concurrent writers) with 1,000."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.harness import HEADER, Report

FULL = os.environ.get("ORDERBUS_FAULTS", "") == "full"
ORDERS = int(os.environ.get("ORDERBUS_FAULT_ORDERS", "10000" if FULL else "1000"))
CI_SUBSET = {
    "test_router_kill9",
    "test_consumers_kill9",
    "test_broker_restart",
    "test_duplicate_flood",
    "test_outbox_ordering_under_concurrent_writers",
}
REPORTS: list[Report] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        is_fault = item.get_closest_marker("faults") is not None
        (
            drop if is_fault and getattr(item, "originalname", item.name) not in CI_SUBSET else keep
        ).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    table = "\n".join([HEADER, *(r.row() for r in REPORTS)])
    terminalreporter.write_sep("=", "orderbus fault suite")
    terminalreporter.write_line(table)
    target = os.environ.get("ORDERBUS_FAULT_REPORT")
    if target:
        Path(target).write_text(table + "\n", encoding="utf-8")
