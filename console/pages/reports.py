"""Reports (the owner, operations, finance): per day, week or month and per
channel, shop or SKU: orders, units, amounts, cancellations and refunds;
exceptions by cause; delivery time per system; SKUs with no order in N
days. Tables and charts, downloadable as CSV or XLSX.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from console import advice, charts, figures, story
from console.web import Reader, Viewer
from infra.database import translate_db_errors
from infra.spreadsheets import safe_cell, xlsx_bytes
from infra.tables import orders

router = APIRouter()
PERIODS = ("day", "week", "month")
DIMENSIONS = ("channel", "shop", "sku")
MAX_DAYS = 366


def _range(viewer: Viewer, start: str, end: str) -> tuple[date, date]:
    today = viewer.formats.today()
    try:
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last - timedelta(days=6)
    except ValueError:
        first, last = today - timedelta(days=6), today
    if first > last:
        first, last = last, first
    return max(first, last - timedelta(days=MAX_DAYS)), last


def _rows(viewer: Viewer, first: date, last: date, period: str, by: str) -> dict[str, Any]:
    zone = viewer.formats.zone
    start = figures.day_window(first, zone)[0]
    end = figures.day_window(last, zone)[1]
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        sales = figures.sales(conn, start, end, zone, period, by)
        by_cause = figures.exceptions_by_cause(conn, start, end)
        latency = figures.latency_by_system(conn, start, end)
        received = figures.count_where(
            conn, orders, orders.c.created_at >= start, orders.c.created_at < end
        )
    return {"sales": sales, "by_cause": by_cause, "latency": latency, "received": received}


def _amounts(viewer: Viewer, amounts: dict[str, Any]) -> str:
    return " + ".join(viewer.formats.money(v, c) for c, v in sorted(amounts.items())) or "—"


@router.get("/reports")
def reports_page(
    viewer: Reader,
    start: str = "",
    end: str = "",
    period: str = "day",
    by: str = "channel",
    idle_days: int = 30,
) -> HTMLResponse:
    period = period if period in PERIODS else "day"
    by = by if by in DIMENSIONS else "channel"
    idle_days = max(1, min(idle_days, 3650))
    first, last = _range(viewer, start, end)
    found = _rows(viewer, first, last, period, by)
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        idle = figures.slow_skus(conn, datetime.now(UTC), idle_days)
    sales = found["sales"]
    periods = sorted({p for p, _ in sales})
    keys = sorted({k for _, k in sales})
    series = {
        k: [float(sales[(p, k)].orders) if (p, k) in sales else 0.0 for p in periods]
        for k in keys[:8]
    }
    _ = viewer._
    return viewer.render(
        "reports.html",
        first=first,
        last=last,
        period=period,
        by=by,
        periods=PERIODS,
        dimensions=DIMENSIONS,
        idle_days=idle_days,
        rows=[(p, k, b, _amounts(viewer, b.amounts)) for (p, k), b in sales.items()],
        orders_chart=charts.stacked_columns(
            periods or ["—"], series or {_("none"): [0.0]}, title=_("Orders")
        ),
        causes_chart=charts.horizontal_bars(
            [(advice.title(_, c), float(n)) for c, n in found["by_cause"].most_common()],
            title=_("Exceptions by cause"),
            colours=[charts.PALETTE[3]],
        ),
        total_orders=found["received"],
        exceptions=sum(found["by_cause"].values()),
        exception_rate=sum(found["by_cause"].values()) / found["received"]
        if found["received"]
        else None,
        latency=found["latency"],
        system_name=lambda name: story.target_name(_, name),
        idle=idle,
    )


@router.get("/reports/download")
def download_report(
    viewer: Reader,
    start: str = "",
    end: str = "",
    period: str = "day",
    by: str = "channel",
    kind: str = "csv",
) -> Response:
    period = period if period in PERIODS else "day"
    by = by if by in DIMENSIONS else "channel"
    first, last = _range(viewer, start, end)
    sales = _rows(viewer, first, last, period, by)["sales"]
    header = ["period", by, "orders", "units", "cancelled", "refunded", "currency", "amount"]
    rows: list[list[object]] = []
    for (p, k), b in sales.items():
        for currency, amount in sorted(b.amounts.items()) or [("", 0)]:
            rows.append([p, k, b.orders, b.units, b.cancelled, b.refunded, currency, str(amount)])
    name = f"orders-{by}-{period}-{first.isoformat()}-{last.isoformat()}"
    if kind == "xlsx":
        return Response(
            xlsx_bytes(header, rows, "orders"),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[safe_cell(c) for c in row] for row in rows])
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
