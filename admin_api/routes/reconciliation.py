"""Reconciliation: where every order received on a day is, as JSON or CSV,
and a channel's own export compared with what orderbus received.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from admin_api import reconcile
from admin_api.routes.deps import AdminContext, Context, Viewer
from infra.database import translate_db_errors
from infra.masking import mask_text
from infra.request_bodies import read_limited

router = APIRouter(tags=["reconciliation"])
MAX_EXPORT_BYTES = 20 * 1024 * 1024


def _day_report(
    ctx: AdminContext,
    day: date,
    channel: str | None,
    timezone: str,
    grace: int,
    every_order: bool = True,
) -> reconcile.Report:
    try:
        with translate_db_errors(), ctx.engine.connect() as conn:
            return reconcile.reconcile(
                conn,
                day,
                channel=channel,
                timezone=timezone,
                router_queue=ctx.topology.router_queue,
                grace=timedelta(minutes=grace),
                every_order=every_order,
            )
    except (ValueError, LookupError, OverflowError) as exc:  # a bad zone or day
        raise HTTPException(422, str(exc)) from None


@router.get(
    "/reconciliation",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def reconciliation(
    ctx: Context,
    who: Viewer,
    day: date,
    channel: str | None = None,
    timezone: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
    grace_minutes: Annotated[int, Query(ge=0, le=10080)] = 15,
    format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    """Where every order received on ``day`` is: received = delivered + rejected
    + held + dead-lettered + in flight + unexplained (there should be none);
    ``format=csv`` gives one row per order."""
    # the JSON gives the counts and the unexplained orders; the CSV a row an order
    every_order = format_ == "csv"
    report = _day_report(ctx, day, channel, timezone, grace_minutes, every_order)
    if not who.sees_personal_data:  # details quote refusals, which may name the buyer
        for entry in report.entries:
            entry.detail = mask_text(entry.detail)
    if format_ == "csv":
        # A header is Latin-1: the channel's name goes in only as safe ASCII.
        label = re.sub(r"[^A-Za-z0-9_-]", "_", channel or "all")
        name = f"reconciliation-{day.isoformat()}-{label}.csv"
        return PlainTextResponse(
            report.as_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return report.as_dict()


@router.post(
    "/reconciliation/compare",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def compare_export(
    request: Request,
    _who: Viewer,
    day: date,
    channel: Annotated[str, Query(min_length=1, max_length=64)],
    column: Annotated[str, Query(min_length=1, max_length=100)] = "external_id",
    timezone: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
) -> dict[str, Any]:
    """The channel's own export for ``day`` (CSV, UTF-8 or GBK, the order
    ids in ``column``) against what orderbus received: orders the channel
    has and orderbus never received, and the reverse."""
    ctx: AdminContext = request.app.state.admin
    body, _, too_large = await read_limited(request, MAX_EXPORT_BYTES)
    if too_large:  # refused before, or as soon as, it goes over: never read whole
        raise HTTPException(413, "the export is over 20 MiB")
    try:
        ids = reconcile.export_ids(body, column)
    except Exception as exc:  # the file cannot be read: say why
        raise HTTPException(422, f"cannot read the export: {exc}") from None
    try:
        with translate_db_errors(), ctx.engine.connect() as conn:
            report = reconcile.reconcile(
                conn,
                day,
                channel=channel,
                timezone=timezone,
                router_queue=ctx.topology.router_queue,
            )
            return reconcile.compare(report, conn, channel, ids)
    except (ValueError, LookupError, OverflowError) as exc:
        raise HTTPException(422, str(exc)) from None
