"""The dashboard (数据大屏) for the owner: a full-screen page that refreshes
by itself (htmx polls its panels): orders today by channel and hour,
delivered vs exceptions, holds waiting, outbox backlog and queue depth,
delivery latency per system, open alerts. Charts, not tables.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import logging
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from console import advice, charts, figures, story
from console.web import Reader, Viewer
from infra.database import translate_db_errors

router = APIRouter()
log = logging.getLogger(__name__)


@router.get("/dashboard")
def dashboard(viewer: Reader) -> HTMLResponse:
    return viewer.render(
        "dashboard.html",
        panels=_panels(viewer),
        refresh=viewer.console.options.dashboard_refresh_seconds,
    )


@router.get("/dashboard/panels")
def dashboard_panels(viewer: Reader) -> HTMLResponse:
    return viewer.render("dashboard_panels.html", panels=_panels(viewer))


def _queue_depth(viewer: Viewer) -> int | None:
    depths = viewer.ctx.collector.queue_depths
    if depths is None:
        return None
    try:
        return sum(count for _, count in depths())
    except Exception as exc:  # the broker away: the rest of the screen still shows
        log.warning("dashboard: queue depths unavailable: %s", exc)
        return None


def _panels(viewer: Viewer) -> dict[str, object]:
    _ = viewer._
    zone = viewer.formats.zone
    start, end = figures.day_window(viewer.formats.today(), zone)
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        # the day's settled hours are read once a process (console/day_figures.py)
        day = viewer.console.day_figures.read(conn, start, end, zone, datetime.now(UTC))
        by_cause = figures.exceptions_by_cause(conn, start, end)
        waiting = figures.waiting(conn)
        alerts = figures.open_alerts(conn)
    hourly, delivered, latency = day.by_hour, day.delivered, day.latency()
    exceptions = sum(by_cause.values())
    orders_today = sum(sum(v) for v in hourly.values())
    return {
        "updated": datetime.now(UTC),
        "orders_today": orders_today,
        "delivered": delivered,
        "exceptions": exceptions,
        "waiting": waiting,
        "queue_depth": _queue_depth(viewer),
        "alerts": viewer.masked(alerts),
        "hourly": charts.stacked_columns(
            [f"{h:02d}" for h in range(24)],
            hourly or {_("none"): [0] * 24},
            title=_("Orders today by channel and hour"),
        ),
        "by_channel": charts.horizontal_bars(
            sorted(((c, float(sum(v))) for c, v in hourly.items()), key=lambda x: -x[1]),
            title=_("Orders today by channel"),
        ),
        "delivery_share": charts.share_bar(
            [
                (_("Delivered"), float(delivered), charts.PALETTE[1]),
                (_("Exceptions"), float(exceptions), charts.PALETTE[3]),
            ],
            title=_("Delivered vs exceptions today"),
        ),
        "causes": charts.horizontal_bars(
            [(advice.title(_, c), float(n)) for c, n in by_cause.most_common()],
            title=_("Exceptions today by cause"),
            colours=[charts.PALETTE[3]],
        ),
        "latency": charts.horizontal_bars(
            [(story.target_name(_, lat.system), round(lat.p50, 1)) for lat in latency],
            title=_("Delivery time per system today (median, seconds)"),
            unit="s",
        ),
    }
