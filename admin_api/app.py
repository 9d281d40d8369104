"""The admin API: dead letters (list, show, retry, retry by filter, discard),
orders held as suspected duplicates (list, release, reject), rejected requests
and the audit log. OpenAPI at ``/docs``.

(No ``from __future__ import annotations`` here: FastAPI must see the
``Actor`` dependency alias defined inside :func:`create_admin_app`.)
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, Engine, Select, func, select

from admin_api.auth import TokenAuth
from admin_api.schemas import (
    AuditEntry,
    DeadLetterDetail,
    DeadLetterFilter,
    DeadLetterStatus,
    DeadLetterSummary,
    DiscardRequest,
    HoldDecision,
    HoldOut,
    HoldReleased,
    HoldStatus,
    Page,
    RejectedRequestOut,
    RetryManyRequest,
    RetryManyResult,
    RetryRequest,
    RetryResult,
)
from canonical.errors import TransientError
from router import deadletters, holds
from router.database import translate_db_errors
from router.tables import audit_log, dead_letters, rejected_requests
from router.tables import holds as holds_table
from router.topology import Topology

MAX_PAGE = 500


def _dead_letter_conditions(f: DeadLetterFilter) -> list[ColumnElement[bool]]:
    c = dead_letters.c
    conditions: list[ColumnElement[bool]] = []
    if f.queue:
        conditions.append(c.queue == f.queue)
    if f.reason:
        conditions.append(c.reason == f.reason)
    if f.channel:
        conditions.append(c.channel == f.channel)
    if f.status:
        conditions.append(c.status == f.status)
    if f.since:
        conditions.append(c.last_failed_at >= f.since)
    if f.until:
        conditions.append(c.last_failed_at < f.until)
    return conditions


def create_admin_app(engine: Engine, auth: TokenAuth, topology: Topology) -> FastAPI:
    app = FastAPI(
        title="orderbus admin",
        description=(
            "Inspect and retry dead letters, release or reject orders held as suspected "
            "duplicates, inspect rejected webhook requests and the audit log. "
            "Authenticate with `Authorization: Bearer <token>`."
        ),
        version="1",
    )
    Actor = Annotated[str, Depends(auth)]  # noqa: N806 - a type alias

    @app.exception_handler(TransientError)
    def unavailable(_request: Request, exc: TransientError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail, "reason": exc.reason},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    def page(query: Select[Any], order: Any, limit: int, offset: int) -> tuple[int, list[Any]]:
        with translate_db_errors(), engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
            rows = conn.execute(query.order_by(order).limit(limit).offset(offset)).mappings().all()
        return int(total), list(rows)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/dead-letters", response_model=Page[DeadLetterSummary], tags=["dead letters"])
    def list_dead_letters(
        _actor: Actor,
        queue: str | None = None,
        reason: str | None = None,
        channel: str | None = None,
        status_: Annotated[DeadLetterStatus | None, Query(alias="status")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        f = DeadLetterFilter(
            queue=queue, reason=reason, channel=channel, status=status_, since=since, until=until
        )
        query = select(dead_letters).where(*_dead_letter_conditions(f))
        total, rows = page(query, dead_letters.c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get(
        "/dead-letters/{dead_letter_id}", response_model=DeadLetterDetail, tags=["dead letters"]
    )
    def show_dead_letter(dead_letter_id: int, _actor: Actor) -> Any:
        with translate_db_errors(), engine.connect() as conn:
            row = (
                conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id))
                .mappings()
                .first()
            )
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter")
        return row

    @app.post(
        "/dead-letters/{dead_letter_id}/retry",
        response_model=RetryResult,
        status_code=status.HTTP_202_ACCEPTED,
        tags=["dead letters"],
    )
    def retry_dead_letter(
        dead_letter_id: int, actor: Actor, request: RetryRequest | None = None
    ) -> dict[str, Any]:
        try:
            with translate_db_errors(), engine.begin() as conn:
                message_id = deadletters.retry(
                    conn, dead_letter_id, actor, request.note if request else None
                )
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter") from None
        except deadletters.DeadLetterStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return {"id": dead_letter_id, "message_id": message_id, "status": "retried"}

    @app.post("/dead-letters/retry", response_model=RetryManyResult, tags=["dead letters"])
    def retry_many(request: RetryManyRequest, actor: Actor) -> dict[str, Any]:
        """Retry every open dead letter matching the filter (at most ``limit``).

        With ``dry_run`` it only counts what it would retry.
        """
        conditions = _dead_letter_conditions(request)
        with translate_db_errors(), engine.begin() as conn:
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
                    mid = deadletters.retry(conn, dl_id, actor, request.note)
                    retried.append({"id": dl_id, "message_id": mid, "status": "retried"})
                deadletters.audit(
                    conn,
                    actor,
                    "dead_letter.retry_many",
                    "dead_letter",
                    None,
                    {"filter": request.model_dump(mode="json"), "retried": len(retried)},
                )
        return {"matched": matched, "retried": retried, "dry_run": request.dry_run}

    @app.post("/dead-letters/{dead_letter_id}/discard", status_code=204, tags=["dead letters"])
    def discard_dead_letter(dead_letter_id: int, request: DiscardRequest, actor: Actor) -> None:
        try:
            with translate_db_errors(), engine.begin() as conn:
                deadletters.discard(conn, dead_letter_id, actor, request.note)
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter") from None
        except deadletters.DeadLetterStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @app.get("/holds", response_model=Page[HoldOut], tags=["holds"])
    def list_holds(
        _actor: Actor,
        status_: Annotated[HoldStatus | None, Query(alias="status")] = "open",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        c = holds_table.c
        query = select(holds_table).where(*([c.status == status_] if status_ else []))
        total, rows = page(query, c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.post("/holds/{hold_id}/release", response_model=HoldReleased, tags=["holds"])
    def release_hold(hold_id: int, decision: HoldDecision, actor: Actor) -> dict[str, Any]:
        try:
            with translate_db_errors(), engine.begin() as conn:
                sent = holds.release(conn, topology, hold_id, actor, decision.note)
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such hold") from None
        except holds.HoldStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return {"id": hold_id, "status": "released", "sent": sent}

    @app.post("/holds/{hold_id}/reject", status_code=204, tags=["holds"])
    def reject_hold(hold_id: int, decision: HoldDecision, actor: Actor) -> None:
        try:
            with translate_db_errors(), engine.begin() as conn:
                holds.reject(conn, hold_id, actor, decision.note)
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such hold") from None
        except holds.HoldStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @app.get(
        "/rejected-requests", response_model=Page[RejectedRequestOut], tags=["rejected requests"]
    )
    def list_rejected(
        _actor: Actor,
        channel: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        c = rejected_requests.c
        conditions: list[ColumnElement[bool]] = []
        if channel:
            conditions.append(c.channel == channel)
        if reason:
            conditions.append(c.reason == reason)
        if since:
            conditions.append(c.received_at >= since)
        query = select(rejected_requests).where(*conditions)
        total, rows = page(query, c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get("/audit", response_model=Page[AuditEntry], tags=["audit"])
    def list_audit(
        _actor: Actor,
        actor: str | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        conditions: list[ColumnElement[bool]] = []
        if actor:
            conditions.append(audit_log.c.actor == actor)
        if action:
            conditions.append(audit_log.c.action == action)
        query = select(audit_log).where(*conditions)
        total, rows = page(query, audit_log.c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    return app
