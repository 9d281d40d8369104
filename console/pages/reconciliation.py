"""Reconciliation (finance): for each channel and day, received = delivered
+ rejected + held + dead-lettered + in flight, with the unexplained listed;
the channel's own export (CSV or XLSX, UTF-8 or GBK) compared with what
orderbus received; the day downloaded as CSV or XLSX.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from admin_api import reconcile
from console.web import Reader, Viewer, checked_form, text_field
from infra.database import translate_db_errors
from infra.masking import mask_text
from infra.spreadsheets import UnreadableFile, xlsx_bytes

router = APIRouter()
COLUMNS = ("received", *reconcile.STATES)


def _day(text: str, viewer: Viewer) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return viewer.formats.today() - timedelta(days=1)  # finance balances yesterday


def _report(
    viewer: Viewer, day: date, channel: str | None = None, every_order: bool = True
) -> reconcile.Report:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        report = reconcile.reconcile(
            conn,
            day,
            channel=channel,
            timezone=viewer.formats.zone.key,
            router_queue=viewer.ctx.topology.router_queue,
            every_order=every_order,
        )
    if not viewer.sees_personal_data:  # details quote refusals, which may name the buyer
        for entry in report.entries:
            entry.detail = mask_text(entry.detail)
    return report


def _by_channel(report: reconcile.Report) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for entry in report.entries:
        counts = rows[entry.channel]
        counts["received"] += 1
        counts[entry.state] += 1
    for channel, delivered in report.delivered_unlisted.items():
        rows[channel]["received"] += delivered
        rows[channel]["delivered"] += delivered
    return [
        {
            "channel": channel,
            **counts,
            "balanced": counts["unexplained"] == 0
            and counts["received"] == sum(counts[s] for s in reconcile.STATES),
        }
        for channel, counts in sorted(rows.items())
    ]


@router.get("/reconciliation")
def reconciliation_page(viewer: Reader, day: str = "") -> HTMLResponse:
    return _page(viewer, _day(day, viewer))


def _page(
    viewer: Viewer,
    day: date,
    compared: dict[str, Any] | None = None,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    report = _report(viewer, day, every_order=False)  # counts, and the exceptions listed
    rows = _by_channel(report)
    totals = {c: sum(r[c] for r in rows) for c in COLUMNS}
    return viewer.render(
        "reconciliation.html",
        status_code,
        day=day,
        rows=rows,
        totals=totals,
        columns=COLUMNS,
        balanced=all(r["balanced"] for r in rows),
        unexplained=[e for e in report.entries if e.state == "unexplained"],
        refused_requests=report.refused_requests,
        compared=compared,
        error=error,
        channels=[r["channel"] for r in rows],
        previous=(day - timedelta(days=1)).isoformat(),
        following=(day + timedelta(days=1)).isoformat(),
    )


@router.post("/reconciliation/compare")
async def compare_export(request: Request, viewer: Reader) -> HTMLResponse:
    """Comparing changes nothing, but the form carries a file: it is checked
    like every other form."""
    form = await checked_form(request, viewer)
    day = _day(text_field(form, "day", 10), viewer)
    channel = text_field(form, "channel", 64)
    column = text_field(form, "column", 100) or "external_id"
    upload = form.get("export")
    if not channel or upload is None or isinstance(upload, str):
        return _page(
            viewer, day, error=viewer._("Choose the channel and the export file."), status_code=422
        )
    data = await upload.read()
    try:
        ids = reconcile.export_ids(data, column)
    except (UnreadableFile, ValueError) as exc:
        return _page(
            viewer,
            day,
            error=viewer._("Cannot read the export: %(why)s", why=str(exc)),
            status_code=422,
        )
    report = _report(viewer, day, channel)
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        compared = reconcile.compare(report, conn, channel, ids)
    return _page(viewer, day, compared=compared)


@router.get("/reconciliation/download")
def download(viewer: Reader, day: str = "", kind: str = "csv") -> Response:
    asked = _day(day, viewer)
    report = _report(viewer, asked)
    name = f"reconciliation-{asked.isoformat()}"
    if kind == "xlsx":
        rows: list[list[object]] = [
            [e.channel, e.external_id, e.order_number, e.state, e.detail] for e in report.entries
        ]
        data = xlsx_bytes(["channel", "external_id", "order_number", "state", "detail"], rows, name)
        return Response(
            data,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    # UTF-8 with a BOM: Excel in a Chinese Windows opens it without garbling.
    return Response(
        "\ufeff" + report.as_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
