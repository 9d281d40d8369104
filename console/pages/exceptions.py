"""Exceptions (operations): dead letters grouped by business cause with
their trend; a cause's list; one dead letter in plain words with what to
do; retry, discard with a reason, edit and retry; retry a whole group after
seeing how many it would touch, as a background job with live progress.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from admin_api import causes, deadletters, retry_jobs
from admin_api.auth import Role
from admin_api.routes.dead_letters import edit_problems
from console import advice, charts
from console.web import (
    PREFIX,
    NotFound,
    OperatorPage,
    Reader,
    Viewer,
    checked_form,
    see_other,
    text_field,
)
from infra.database import translate_db_errors
from infra.masking import viewer_body
from infra.tables import dead_letters
from infra.tables import retry_jobs as retry_jobs_table

router = APIRouter()
TREND_DAYS = 14
PAGE_SIZE = 50
GROUP_RETRY_RATE = 20.0  # retries a second: a fixed cause's group drains without a burst


def _trend(viewer: Viewer) -> tuple[list[str], list[float], dict[str, list[float]]]:
    """New dead letters per day over the last two weeks, in the viewer's
    days: the day labels, all causes together, and each cause's."""
    since = datetime.now(UTC) - timedelta(days=TREND_DAYS)
    c = dead_letters.c
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(c.first_failed_at, c.reason, c.detail).where(c.first_failed_at >= since)
        ).all()
    per_day: Counter[str] = Counter()
    per_cause: dict[str, Counter[str]] = {}
    for at, reason, detail in rows:
        moment = at if at.tzinfo else at.replace(tzinfo=UTC)
        day = moment.astimezone(viewer.formats.zone).date().isoformat()
        per_day[day] += 1
        per_cause.setdefault(causes.cause_of(reason, detail), Counter())[day] += 1
    today = viewer.formats.today()
    days = [(today - timedelta(days=n)).isoformat() for n in range(TREND_DAYS - 1, -1, -1)]
    each = {cause: [float(found[d]) for d in days] for cause, found in per_cause.items()}
    return [d[5:] for d in days], [float(per_day[d]) for d in days], each


@router.get("/exceptions")
def exception_groups(viewer: Reader) -> HTMLResponse:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        groups = causes.groups(conn, "open")
        jobs = (
            conn.execute(select(retry_jobs_table).order_by(retry_jobs_table.c.id.desc()).limit(5))
            .mappings()
            .all()
        )
    labels, values, each = _trend(viewer)
    bars = charts.horizontal_bars(
        [(advice.title(viewer._, g["cause"]), float(g["count"])) for g in groups],
        title=viewer._("Open exceptions by cause"),
    )
    trend = charts.trend_line(labels, values, title=viewer._("New exceptions per day"))
    return viewer.render(
        "exceptions.html",
        groups=viewer.masked(groups),
        sparks={
            cause: charts.sparkline(series, title=viewer._("New per day, last 14 days"))
            for cause, series in each.items()
        },
        title_of=lambda c: advice.title(viewer._, c),
        bars=bars,
        trend=trend,
        jobs=jobs,
    )


def _letters_of(
    viewer: Viewer, cause: str, channel: str, q: str, page: int
) -> tuple[int, list[dict[str, Any]]]:
    c = dead_letters.c
    conditions = [c.status == "open"]
    if channel:
        conditions.append(c.channel == channel)
    if q and viewer.sees_personal_data:  # text search would find phones and names
        conditions.append(
            c.body.contains(q, autoescape=True)
            | c.detail.contains(q, autoescape=True)
            | (c.order_number == q)
        )
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        total, ids = causes.page_of_cause(conn, conditions, cause, PAGE_SIZE, page * PAGE_SIZE)
        rows = (
            conn.execute(
                select(
                    c.id,
                    c.order_number,
                    c.channel,
                    c.queue,
                    c.reason,
                    c.detail,
                    c.attempts,
                    c.last_failed_at,
                )
                .where(c.id.in_(ids))
                .order_by(c.id.desc())
            )
            .mappings()
            .all()
        )
    return total, [viewer.masked(dict(r)) for r in rows]


@router.get("/exceptions/causes/{cause}")
def cause_page(
    viewer: Reader, cause: str, channel: str = "", q: str = "", page: int = 0
) -> HTMLResponse:
    if cause not in causes.CAUSES:
        raise NotFound()
    q = q.strip()[:200]
    total, rows = _letters_of(viewer, cause, channel.strip()[:64], q, max(0, min(page, 10_000)))
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        watched = {g["cause"]: g for g in causes.groups(conn, "open")}.get(cause)
        chans = sorted(
            x
            for x in conn.scalars(
                select(dead_letters.c.channel).where(dead_letters.c.status == "open").distinct()
            )
            if x
        )
    return viewer.render(
        "cause.html",
        cause=cause,
        title=advice.title(viewer._, cause),
        advice=advice.advice(viewer._, cause),
        total=total,
        rows=rows,
        channel=channel,
        channels=chans,
        q=q,
        page=page,
        more=(page + 1) * PAGE_SIZE < total,
        investigating=(watched or {}).get("investigating"),
        can_search=viewer.sees_personal_data,
    )


@router.post("/exceptions/causes/{cause}/retry")
async def retry_group(cause: str, request: Request, viewer: OperatorPage) -> Response:
    """Step 1 (``confirm`` absent): how many it would retry. Step 2: start the
    background job for exactly the filter shown, and follow it."""
    form = await checked_form(request, viewer)
    if cause not in causes.CAUSES:
        raise NotFound()
    f = {"cause": cause}
    channel = text_field(form, "channel", 64)
    if channel:
        f["channel"] = channel
    note = text_field(form, "note", 500) or None
    with translate_db_errors(), viewer.ctx.engine.begin() as conn:
        if form.get("confirm") != "yes":
            count = len(retry_jobs.matching_open(conn, f))
            return viewer.render(
                "retry_preview.html",
                cause=cause,
                title=advice.title(viewer._, cause),
                count=count,
                channel=channel,
                note=note or "",
            )
        job_id = retry_jobs.start(conn, f, GROUP_RETRY_RATE, note, viewer.name)
    return see_other(f"{PREFIX}/exceptions/jobs/{job_id}")


@router.post("/exceptions/causes/{cause}/investigation")
async def set_investigation(cause: str, request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    if cause not in causes.CAUSES:
        raise NotFound()
    owner = text_field(form, "owner", 100)
    by = viewer.name
    with translate_db_errors(), viewer.ctx.engine.begin() as conn:
        if form.get("close") == "yes":
            causes.close_investigation(conn, cause, by)
        elif owner:
            causes.investigate(conn, cause, owner, text_field(form, "note", 500) or None, by)
    return see_other(f"{PREFIX}/exceptions/causes/{cause}")


def _letter(viewer: Viewer, letter_id: int) -> dict[str, Any]:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        row = (
            conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound()
    letter = dict(row)
    if not viewer.sees_personal_data:
        shown = viewer.masked(letter)
        shown["body"] = viewer_body(row["body"]) if row["body_encoding"] == "utf-8" else ""
        letter = shown
    return letter


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), ensure_ascii=False, indent=2)
    except ValueError:
        return body


@router.get("/exceptions/letters/{letter_id}")
def letter_page(letter_id: int, viewer: Reader) -> HTMLResponse:
    return _letter_page(viewer, letter_id)


def _letter_page(
    viewer: Viewer,
    letter_id: int,
    *,
    edited: str | None = None,
    problems: list[dict[str, str]] | None = None,
    message: str = "",
    status_code: int = 200,
    note: str = "",
) -> HTMLResponse:
    letter = _letter(viewer, min(max(letter_id, 0), 2**63 - 1))
    cause = causes.cause_of(letter["reason"], letter["detail"])
    return viewer.render(
        "letter.html",
        status_code,
        d=letter,
        cause=cause,
        title=advice.title(viewer._, cause),
        advice=advice.advice(viewer._, cause),
        body=edited if edited is not None else _pretty(letter["body"] or ""),
        editable=letter["status"] == "open" and not deadletters.is_delivery(letter["routing_key"]),
        problems=[{**p, "field": advice.field_name(viewer._, p["field"])} for p in problems or []],
        note=note,
        message=message,
        may_act=viewer.can(Role.operator),
        maybe_received=cause == "endpoint_down",
    )


@router.post("/exceptions/letters/{letter_id}/{action}")
async def act_on_letter(
    letter_id: int, action: str, request: Request, viewer: OperatorPage
) -> Response:
    form = await checked_form(request, viewer)
    note = text_field(form, "note", 500)
    by = viewer.name
    try:
        if action == "retry":
            with translate_db_errors(), viewer.ctx.engine.begin() as conn:
                deadletters.retry(conn, letter_id, by, note or None)
        elif action == "discard":
            if not note:
                return _letter_page(
                    viewer, letter_id, message=viewer._("Say why it is discarded."), status_code=422
                )
            with translate_db_errors(), viewer.ctx.engine.begin() as conn:
                deadletters.discard(conn, letter_id, by, note)
        elif action == "edit":
            return _edit_and_retry(viewer, letter_id, form.get("body"), note, by)
        else:
            raise NotFound()
    except KeyError:
        raise NotFound() from None
    except deadletters.DeadLetterStateError as exc:
        return _letter_page(
            viewer,
            letter_id,
            message=viewer._(
                "Nothing done: it was already retried or discarded (%(why)s).", why=str(exc)
            ),
            status_code=409,
        )
    return see_other(f"{PREFIX}/exceptions/letters/{letter_id}")


def _edit_and_retry(viewer: Viewer, letter_id: int, body: Any, note: str, by: str) -> Response:
    letter = _letter(viewer, letter_id)
    text = body if isinstance(body, str) else ""
    if deadletters.is_delivery(letter["routing_key"]):
        return _letter_page(
            viewer,
            letter_id,
            message=viewer._(
                "A delivery to one system cannot be edited: "
                "correct the data in that system, or retry it as it is."
            ),
            status_code=409,
        )
    problems = edit_problems(letter["routing_key"], text)
    if not note:
        problems.append({"field": "note", "message": viewer._("Say why it was edited.")})
    if problems:
        return _letter_page(
            viewer, letter_id, edited=text, problems=problems, status_code=422, note=note
        )
    with translate_db_errors(), viewer.ctx.engine.begin() as conn:
        deadletters.retry(conn, letter_id, by, note, edited=text.encode("utf-8"))
    return see_other(f"{PREFIX}/exceptions/letters/{letter_id}")


@router.get("/exceptions/jobs/{job_id}")
def job_page(job_id: int, viewer: Reader) -> HTMLResponse:
    return viewer.render(
        "job.html", job=_job(viewer, job_id), title_of=lambda c: advice.title(viewer._, c)
    )


@router.get("/exceptions/jobs/{job_id}/progress")
def job_progress(job_id: int, viewer: Reader) -> HTMLResponse:
    """The part of the job page that refreshes itself (htmx)."""
    return viewer.render("job_progress.html", job=_job(viewer, job_id))


@router.post("/exceptions/jobs/{job_id}/cancel")
async def cancel_job(job_id: int, request: Request, viewer: OperatorPage) -> Response:
    await checked_form(request, viewer)
    with translate_db_errors(), viewer.ctx.engine.begin() as conn:
        retry_jobs.cancel(conn, job_id, viewer.name)
    return see_other(f"{PREFIX}/exceptions/jobs/{job_id}")


def _job(viewer: Viewer, job_id: int) -> dict[str, Any]:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        found = retry_jobs.progress(conn, min(max(job_id, 0), 2**63 - 1))
    if found is None:
        raise NotFound()
    return found
