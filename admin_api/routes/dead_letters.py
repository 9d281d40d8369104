"""Dead letters: list and search, one in full, retry (one, or many by
filter), edit-and-retry, discard. Every change is audited.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Connection, func, select

from admin_api import causes, deadletters
from admin_api.routes.deps import (
    MAX_OFFSET,
    MAX_PAGE,
    Context,
    Operator,
    RowId,
    Viewer,
    masked_rows,
    page,
    where_equal,
)
from admin_api.schemas import (
    DeadLetterDetail,
    DeadLetterFilter,
    DeadLetterStatus,
    DeadLetterSummary,
    DiscardRequest,
    EditRetry,
    Instant,
    Page,
    RetryManyRequest,
    RetryManyResult,
    RetryRequest,
    RetryResult,
)
from canonical.order import CanonicalOrder
from canonical.validation import violations
from infra.audit import audit
from infra.database import translate_db_errors
from infra.masking import for_viewer, viewer_body
from infra.tables import dead_letters

router = APIRouter(tags=["dead letters"])


def filter_conditions(f: DeadLetterFilter) -> list[ColumnElement[bool]]:
    c = dead_letters.c
    conditions = where_equal(
        dead_letters, queue=f.queue, reason=f.reason, channel=f.channel, status=f.status
    )
    if f.since:
        conditions.append(c.last_failed_at >= f.since)
    if f.until:
        conditions.append(c.last_failed_at < f.until)
    return conditions


def edit_problems(routing_key: str, body: str) -> list[dict[str, str]]:
    """What is wrong with an edited body (empty: nothing)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        return [{"field": "body", "message": f"not JSON: {exc}"}]
    if routing_key.startswith("fetch."):
        missing = [
            k for k in ("external_id", "delivery_id") if not isinstance(data, dict) or k not in data
        ]
        return [{"field": k, "message": "a fetch request names the order"} for k in missing]
    try:
        order = CanonicalOrder.model_validate(data)
    except ValidationError as exc:
        return [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()[:50]
        ]
    return [{"field": v.field, "message": v.message} for v in violations(order)]


def _retry_or_http_error(
    conn: Connection, dead_letter_id: int, actor: str, note: str | None, edited: bytes | None = None
) -> str:
    try:
        return deadletters.retry(conn, dead_letter_id, actor, note, edited=edited)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter") from None
    except deadletters.DeadLetterStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.get("/dead-letters", response_model=Page[DeadLetterSummary])
def list_dead_letters(
    ctx: Context,
    who: Viewer,
    queue: str | None = None,
    reason: str | None = None,
    channel: str | None = None,
    status_: Annotated[DeadLetterStatus | None, Query(alias="status")] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in body, detail or exception")
    ] = None,
    order_number: Annotated[str | None, Query(max_length=32)] = None,
    min_attempts: Annotated[int | None, Query(ge=1, le=10**6)] = None,
    cause: Annotated[
        str | None, Query(description="a business cause (GET /dead-letter-causes)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    f = DeadLetterFilter(
        queue=queue, reason=reason, channel=channel, status=status_, since=since, until=until
    )
    c = dead_letters.c
    conditions = filter_conditions(f)
    if q:
        if not who.sees_personal_data:  # text search would find phones and names
            raise HTTPException(status.HTTP_403_FORBIDDEN, "searching by text needs an operator")
        conditions.append(
            c.body.contains(q, autoescape=True)
            | c.detail.contains(q, autoescape=True)
            | c.exception.contains(q, autoescape=True)
        )
    if order_number:
        conditions.append(c.order_number == order_number)
    if min_attempts:
        conditions.append(c.attempts >= min_attempts)
    query = select(dead_letters).where(*conditions)
    if cause is None:
        found = page(ctx.engine, query, c.id.desc(), limit, offset)
        return masked_rows(who, found)
    with translate_db_errors(), ctx.engine.connect() as conn:
        total, ids = causes.page_of_cause(conn, conditions, cause, limit, offset)
    with translate_db_errors(), ctx.engine.connect() as conn:
        rows = conn.execute(
            select(dead_letters).where(c.id.in_(ids)).order_by(c.id.desc())
        ).mappings()
        found = {"total": total, "limit": limit, "offset": offset, "items": list(rows)}
    return masked_rows(who, found)


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterDetail)
def show_dead_letter(dead_letter_id: RowId, ctx: Context, who: Viewer) -> Any:
    with translate_db_errors(), ctx.engine.connect() as conn:
        row = (
            conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id))
            .mappings()
            .first()
        )
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter")
    if who.sees_personal_data:
        return row
    masked = for_viewer(dict(row))
    masked["body"] = (
        viewer_body(row["body"])
        if row["body_encoding"] == "utf-8"
        else f"(not shown to viewers: {len(row['body'])} characters of base64)"
    )
    return masked


@router.post(
    "/dead-letters/{dead_letter_id}/edit-and-retry",
    response_model=RetryResult,
    status_code=status.HTTP_202_ACCEPTED,
)
def edit_and_retry(
    dead_letter_id: RowId, request: EditRetry, ctx: Context, who: Operator
) -> dict[str, Any]:
    """Retry with a corrected body: it must be a valid canonical order (or,
    for a fetch request, name the order), the reason is required, and the
    audit log keeps the original, the edit and their difference. The edit goes
    through the router like any arrival; a delivery to one system (an order
    the router accepted) cannot be edited: 409."""
    with translate_db_errors(), ctx.engine.connect() as conn:
        row = conn.execute(
            select(dead_letters.c.routing_key).where(dead_letters.c.id == dead_letter_id)
        ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter")
    if deadletters.is_delivery(row.routing_key):
        raise HTTPException(status.HTTP_409_CONFLICT, deadletters.DELIVERY_EDIT_REFUSED)
    problems = edit_problems(row.routing_key, request.body)
    if problems:
        raise HTTPException(422, {"message": "the edited body is not valid", "errors": problems})
    edited = request.body.encode("utf-8")
    with translate_db_errors(), ctx.engine.begin() as conn:
        message_id = _retry_or_http_error(conn, dead_letter_id, who.name, request.reason, edited)
    return {"id": dead_letter_id, "message_id": message_id, "status": "retried"}


@router.post(
    "/dead-letters/{dead_letter_id}/retry",
    response_model=RetryResult,
    status_code=status.HTTP_202_ACCEPTED,
)
def retry_dead_letter(
    dead_letter_id: RowId, ctx: Context, who: Operator, request: RetryRequest | None = None
) -> dict[str, Any]:
    note = request.note if request else None
    with translate_db_errors(), ctx.engine.begin() as conn:
        message_id = _retry_or_http_error(conn, dead_letter_id, who.name, note)
    return {"id": dead_letter_id, "message_id": message_id, "status": "retried"}


@router.post("/dead-letters/retry", response_model=RetryManyResult)
def retry_many(request: RetryManyRequest, ctx: Context, who: Operator) -> dict[str, Any]:
    """Retry every open dead letter matching the filter (at most ``limit``).

    With ``dry_run`` it only counts what it would retry.
    """
    conditions = filter_conditions(request)
    with translate_db_errors(), ctx.engine.begin() as conn:
        matched = conn.execute(
            select(func.count()).select_from(dead_letters).where(*conditions)
        ).scalar_one()
        ids = (
            conn.execute(
                select(dead_letters.c.id)
                .where(*conditions)
                .order_by(dead_letters.c.id)
                .limit(request.limit)
            )
            .scalars()
            .all()
        )
        retried = []
        if not request.dry_run:
            for dl_id in ids:
                mid = deadletters.retry(conn, dl_id, who.name, request.note)
                retried.append({"id": dl_id, "message_id": mid, "status": "retried"})
            audit(
                conn,
                who.name,
                "dead_letter.retry_many",
                "dead_letter",
                None,
                {"filter": request.model_dump(mode="json"), "retried": len(retried)},
            )
    return {"matched": matched, "retried": retried, "dry_run": request.dry_run}


@router.post("/dead-letters/{dead_letter_id}/discard", status_code=204)
def discard_dead_letter(
    dead_letter_id: RowId, request: DiscardRequest, ctx: Context, who: Operator
) -> None:
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            deadletters.discard(conn, dead_letter_id, who.name, request.note)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter") from None
    except deadletters.DeadLetterStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
