"""The admin API: orders and their timelines, dead letters (list, show, retry,
retry by filter, discard), orders held as suspected duplicates (list,
release, reject), rejected requests, the audit log, API keys, health and
readiness. OpenAPI at ``/docs``. Roles and masking: admin_api/auth.py.

(No ``from __future__ import annotations`` here: FastAPI must see the
``Actor`` dependency alias defined inside :func:`create_admin_app`.)
"""

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Engine, Select, func, select

from admin_api import causes, deadletters, keys, lookup, metrics, reconcile, retry_jobs
from admin_api.auth import KeyAuth, Principal, Role
from admin_api.schemas import (
    AuditEntry,
    CauseRetry,
    DeadLetterDetail,
    DeadLetterFilter,
    DeadLetterStatus,
    DeadLetterSummary,
    DiscardRequest,
    EditRetry,
    HoldDecision,
    HoldOut,
    HoldReleased,
    HoldStatus,
    Instant,
    Investigation,
    KeyCreated,
    KeyOut,
    KeyRequest,
    NotificationOut,
    OrderSearch,
    OrderStory,
    Page,
    RejectedRequestOut,
    RetryJobRequest,
    RetryManyRequest,
    RetryManyResult,
    RetryRequest,
    RetryResult,
)
from canonical.errors import TransientError
from canonical.order import CanonicalOrder
from canonical.validation import violations
from infra.audit import audit
from infra.database import translate_db_errors
from infra.masking import mask_body, mask_text, mask_value
from infra.tables import alerts as alerts_table
from infra.tables import audit_log, dead_letters, notifications, rejected_requests
from infra.tables import holds as holds_table
from infra.topology import Topology
from router import holds
from router.fanout import Fanout

MAX_PAGE = 500
TEXT_SEARCH = "text in the body, detail or exception"
BY_CAUSE = "a business cause (GET /dead-letter-causes)"
MAX_OFFSET = 10**9
# A row id: what a BIGINT (and SQLite's INTEGER) holds; anything else is a 422.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


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


def create_admin_app(
    engine: Engine,
    auth: KeyAuth,
    topology: Topology,
    checks: Mapping[str, Callable[[], None]] | None = None,
    queue_depths: Callable[[], Iterable[tuple[str, int]]] | None = None,
    fanout: Fanout | None = None,
) -> FastAPI:
    app = FastAPI(
        title="orderbus admin",
        description=(
            "Find an order and its timeline; inspect and retry dead letters; release or "
            "reject orders held as suspected duplicates; inspect rejected webhook requests "
            "and the audit log; manage API keys. Authenticate with "
            "`Authorization: Bearer <key>`; roles: viewer (read, personal data masked), "
            "operator (retry, discard, release, reject), admin (keys)."
        ),
        version="1",
    )
    # Type aliases of the role dependencies.
    Viewer = Annotated[Principal, Depends(auth.require(Role.viewer))]  # noqa: N806
    Operator = Annotated[Principal, Depends(auth.require(Role.operator))]  # noqa: N806
    Admin = Annotated[Principal, Depends(auth.require(Role.admin))]  # noqa: N806
    readiness = dict(checks or {})
    collector = metrics.DatabaseCollector(engine, queue_depths)

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
        _who: Viewer,
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
        conditions = _dead_letter_conditions(f)
        if q:
            conditions.append(c.body.contains(q) | c.detail.contains(q) | c.exception.contains(q))
        if order_number:
            conditions.append(c.order_number == order_number)
        if min_attempts:
            conditions.append(c.attempts >= min_attempts)
        query = select(dead_letters).where(*conditions)
        if cause is None:
            total, rows = page(query, c.id.desc(), limit, offset)
        else:  # the cause is read from reason and detail: filtered here
            with translate_db_errors(), engine.connect() as conn:
                found = [
                    r
                    for r in conn.execute(query.order_by(c.id.desc())).mappings()
                    if causes.cause_of(r["reason"], r["detail"]) == cause
                ]
            total, rows = len(found), found[offset : offset + limit]
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get("/dead-letter-causes", tags=["dead letters"])
    def dead_letter_causes(
        _who: Viewer,
        status_: Annotated[DeadLetterStatus | None, Query(alias="status")] = "open",
    ) -> list[dict[str, Any]]:
        """Dead letters grouped by business cause (a SKU not mapped, a bad address,
        the ERP refusing, an expired token, an endpoint down...), with who is
        looking into each."""
        with translate_db_errors(), engine.connect() as conn:
            return causes.groups(conn, status_)

    @app.post(
        "/dead-letter-causes/{cause}/retry", response_model=RetryManyResult, tags=["dead letters"]
    )
    def retry_cause(cause: str, request: CauseRetry, who: Operator) -> dict[str, Any]:
        """Once a cause is fixed, retry its open dead letters (at most ``limit``);
        ``dry_run`` only counts them."""
        if cause not in causes.CAUSES:
            raise HTTPException(404, f"no cause {cause!r} (known: {', '.join(causes.CAUSES)})")
        with translate_db_errors(), engine.begin() as conn:
            ids = causes.open_ids_by_cause(conn, cause)
            retried = []
            if not request.dry_run:
                for dl_id in ids[: request.limit]:
                    mid = deadletters.retry(conn, dl_id, who.name, request.note)
                    retried.append({"id": dl_id, "message_id": mid, "status": "retried"})
                audit(
                    conn,
                    who.name,
                    "dead_letter.retry_cause",
                    "dead_letter_cause",
                    cause,
                    {"matched": len(ids), "retried": len(retried), "note": request.note},
                )
        return {"matched": len(ids), "retried": retried, "dry_run": request.dry_run}

    @app.put("/dead-letter-causes/{cause}/investigation", status_code=204, tags=["dead letters"])
    def investigate_cause(cause: str, request: Investigation, who: Operator) -> None:
        """Mark a cause as being looked into, by ``owner``."""
        if cause not in causes.CAUSES:
            raise HTTPException(404, f"no cause {cause!r}")
        with translate_db_errors(), engine.begin() as conn:
            causes.investigate(conn, cause, request.owner, request.note, who.name)

    @app.delete("/dead-letter-causes/{cause}/investigation", status_code=204, tags=["dead letters"])
    def close_investigation(cause: str, who: Operator) -> None:
        with translate_db_errors(), engine.begin() as conn:
            if not causes.close_investigation(conn, cause, who.name):
                raise HTTPException(404, f"nobody is investigating {cause!r}")

    @app.post("/retry-jobs", tags=["dead letters"])
    def start_retry_job(request: RetryJobRequest, who: Operator) -> JSONResponse:
        """Retry every open dead letter matching the filter in the background, at
        most ``rate`` a second. With ``dry_run`` it only says how many it would
        touch; otherwise 202 with the job to follow (``GET /retry-jobs/{id}``)."""
        f = request.model_dump(include={"queue", "reason", "channel", "cause"}, exclude_none=True)
        if f.get("cause") and f["cause"] not in causes.CAUSES:
            raise HTTPException(422, f"no cause {f['cause']!r} (known: {', '.join(causes.CAUSES)})")
        with translate_db_errors(), engine.begin() as conn:
            if request.dry_run:
                count = len(retry_jobs.matching_open(conn, f))
                return JSONResponse({"would_retry": count, "filter": f})
            job_id = retry_jobs.start(conn, f, request.rate, request.note, who.name)
            return JSONResponse(retry_jobs.progress(conn, job_id), status_code=202)

    @app.get("/retry-jobs/{job_id}", tags=["dead letters"])
    def retry_job(job_id: RowId, _who: Viewer) -> dict[str, Any]:
        """Progress, and a warning when dead letters of the same filter keep arriving."""
        with translate_db_errors(), engine.connect() as conn:
            found = retry_jobs.progress(conn, job_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
        return found

    @app.post("/retry-jobs/{job_id}/cancel", status_code=204, tags=["dead letters"])
    def cancel_retry_job(job_id: RowId, who: Operator) -> None:
        with translate_db_errors(), engine.begin() as conn:
            if not retry_jobs.cancel(conn, job_id, who.name):
                raise HTTPException(status.HTTP_409_CONFLICT, "no running job with that id")

    @app.post(
        "/dead-letters/{dead_letter_id}/edit-and-retry",
        response_model=RetryResult,
        status_code=status.HTTP_202_ACCEPTED,
        tags=["dead letters"],
    )
    def edit_and_retry(dead_letter_id: RowId, request: EditRetry, who: Operator) -> dict[str, Any]:
        """Retry with a corrected body: it must be a valid canonical order (or,
        for a fetch request, name the order), the reason is required, and the
        audit log keeps the original, the edit and their difference."""
        with translate_db_errors(), engine.connect() as conn:
            row = conn.execute(
                select(dead_letters.c.routing_key).where(dead_letters.c.id == dead_letter_id)
            ).first()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter")
        problems = edit_problems(row.routing_key, request.body)
        if problems:
            raise HTTPException(
                422, {"message": "the edited body is not valid", "errors": problems}
            )
        try:
            with translate_db_errors(), engine.begin() as conn:
                message_id = deadletters.retry(
                    conn,
                    dead_letter_id,
                    who.name,
                    request.reason,
                    edited=request.body.encode("utf-8"),
                )
        except deadletters.DeadLetterStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return {"id": dead_letter_id, "message_id": message_id, "status": "retried"}

    @app.get(
        "/dead-letters/{dead_letter_id}", response_model=DeadLetterDetail, tags=["dead letters"]
    )
    def show_dead_letter(dead_letter_id: RowId, who: Viewer) -> Any:
        with translate_db_errors(), engine.connect() as conn:
            row = (
                conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id))
                .mappings()
                .first()
            )
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter")
        if who.sees_personal_data:
            return row
        masked = dict(row)
        if masked["body_encoding"] == "utf-8":
            masked["body"] = mask_body(masked["body"])
        masked["detail"] = mask_text(masked["detail"] or "") or None
        masked["headers"] = mask_value(masked["headers"])
        return masked

    @app.post(
        "/dead-letters/{dead_letter_id}/retry",
        response_model=RetryResult,
        status_code=status.HTTP_202_ACCEPTED,
        tags=["dead letters"],
    )
    def retry_dead_letter(
        dead_letter_id: RowId, who: Operator, request: RetryRequest | None = None
    ) -> dict[str, Any]:
        actor = who.name
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
    def retry_many(request: RetryManyRequest, who: Operator) -> dict[str, Any]:
        """Retry every open dead letter matching the filter (at most ``limit``).

        With ``dry_run`` it only counts what it would retry.
        """
        actor = who.name
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
                audit(
                    conn,
                    actor,
                    "dead_letter.retry_many",
                    "dead_letter",
                    None,
                    {"filter": request.model_dump(mode="json"), "retried": len(retried)},
                )
        return {"matched": matched, "retried": retried, "dry_run": request.dry_run}

    @app.post("/dead-letters/{dead_letter_id}/discard", status_code=204, tags=["dead letters"])
    def discard_dead_letter(dead_letter_id: RowId, request: DiscardRequest, who: Operator) -> None:
        try:
            with translate_db_errors(), engine.begin() as conn:
                deadletters.discard(conn, dead_letter_id, who.name, request.note)
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter") from None
        except deadletters.DeadLetterStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @app.get("/holds", response_model=Page[HoldOut], tags=["holds"])
    def list_holds(
        _who: Viewer,
        status_: Annotated[HoldStatus | None, Query(alias="status")] = "open",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        c = holds_table.c
        query = select(holds_table).where(*([c.status == status_] if status_ else []))
        total, rows = page(query, c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.post("/holds/{hold_id}/release", response_model=HoldReleased, tags=["holds"])
    def release_hold(hold_id: RowId, decision: HoldDecision, who: Operator) -> dict[str, Any]:
        try:
            with translate_db_errors(), engine.begin() as conn:
                sent = holds.release(conn, topology, hold_id, who.name, decision.note, fanout)
                decided = conn.scalar(
                    select(holds_table.c.status).where(holds_table.c.id == hold_id)
                )
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such hold") from None
        except holds.HoldStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        state = "released" if decided == "released" else "awaiting second approval"
        return {"id": hold_id, "status": state, "sent": sent}

    @app.post("/holds/{hold_id}/reject", status_code=204, tags=["holds"])
    def reject_hold(hold_id: RowId, decision: HoldDecision, who: Operator) -> None:
        try:
            with translate_db_errors(), engine.begin() as conn:
                holds.reject(conn, topology, hold_id, who.name, decision.note, fanout)
        except KeyError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such hold") from None
        except holds.HoldStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @app.get(
        "/rejected-requests", response_model=Page[RejectedRequestOut], tags=["rejected requests"]
    )
    def list_rejected(
        _who: Viewer,
        channel: str | None = None,
        reason: str | None = None,
        since: Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
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
        if not _who.sees_personal_data:
            rows = [{**r, "body_excerpt": mask_body(r["body_excerpt"])} for r in rows]
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get(
        "/notifications", response_model=Page[NotificationOut], tags=["customer notifications"]
    )
    def list_notifications(
        who: Viewer,
        order_number: Annotated[str | None, Query(max_length=32)] = None,
        event: Annotated[str | None, Query(max_length=16)] = None,
        medium: Annotated[str | None, Query(max_length=16)] = None,
        since: Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """What customers were told (ORDERBUS_NOTIFY), newest first."""
        c = notifications.c
        conditions: list[ColumnElement[bool]] = []
        if order_number:
            conditions.append(c.order_number == order_number)
        if event:
            conditions.append(c.event == event)
        if medium:
            conditions.append(c.medium == medium)
        if since:
            conditions.append(c.sent_at >= since)
        query = select(notifications).where(*conditions)
        total, rows = page(query, c.id.desc(), limit, offset)
        if not who.sees_personal_data:
            rows = [{**r, "body": None} for r in rows]
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get("/audit", response_model=Page[AuditEntry], tags=["audit"])
    def list_audit(
        _who: Viewer,
        actor: str | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        conditions: list[ColumnElement[bool]] = []
        if actor:
            conditions.append(audit_log.c.actor == actor)
        if action:
            conditions.append(audit_log.c.action == action)
        query = select(audit_log).where(*conditions)
        total, rows = page(query, audit_log.c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """200 when every dependency answers (the database, the broker), else 503
        naming what does not."""
        results: dict[str, str] = {}
        for name, check in readiness.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:  # a check's failure is the answer, not an error
                results[name] = f"unavailable: {exc}"[:300]
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def prometheus(_who: Viewer) -> PlainTextResponse:
        """Prometheus metrics (admin_api/metrics.py); a viewer key as the
        scraper's bearer token."""
        return PlainTextResponse(metrics.render(collector), media_type=CONTENT_TYPE_LATEST)

    def day_report(day: date, channel: str | None, timezone: str, grace: int) -> Any:
        try:
            with translate_db_errors(), engine.connect() as conn:
                return reconcile.reconcile(
                    conn,
                    day,
                    channel=channel,
                    timezone=timezone,
                    router_queue=topology.router_queue,
                    grace=timedelta(minutes=grace),
                )
        except (ValueError, LookupError, OverflowError) as exc:  # a bad zone or day
            raise HTTPException(422, str(exc)) from None

    @app.get(
        "/reconciliation",
        tags=["reconciliation"],
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    )
    def reconciliation(
        _who: Viewer,
        day: date,
        channel: str | None = None,
        timezone: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
        grace_minutes: Annotated[int, Query(ge=0, le=10080)] = 15,
        format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    ) -> Any:
        """Where every order received on ``day`` is: received = delivered + rejected
        + held + dead-lettered + in flight + unexplained (there should be none);
        ``format=csv`` gives one row per order."""
        report = day_report(day, channel, timezone, grace_minutes)
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

    @app.post(
        "/reconciliation/compare",
        tags=["reconciliation"],
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
        body = await request.body()
        if len(body) > 20 * 1024 * 1024:
            raise HTTPException(413, "the export is over 20 MiB")
        try:
            ids = reconcile.export_ids(body, column)
        except Exception as exc:  # the file cannot be read: say why
            raise HTTPException(422, f"cannot read the export: {exc}") from None
        try:
            with translate_db_errors(), engine.connect() as conn:
                report = reconcile.reconcile(
                    conn,
                    day,
                    channel=channel,
                    timezone=timezone,
                    router_queue=topology.router_queue,
                )
                return reconcile.compare(report, conn, channel, ids)
        except (ValueError, LookupError, OverflowError) as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/alerts", tags=["alerts"])
    def list_alerts(
        _who: Viewer,
        status_: Annotated[Literal["open", "resolved"] | None, Query(alias="status")] = "open",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Incidents the alert rules found (ORDERBUS_ALERTS), open ones by default."""
        c = alerts_table.c
        query = select(alerts_table).where(*([c.status == status_] if status_ else []))
        total, rows = page(query, c.id.desc(), limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @app.get("/orders", response_model=OrderSearch, tags=["orders"])
    def search_orders(
        who: Viewer,
        number: str | None = None,
        channel: str | None = None,
        external_id: str | None = None,
        phone: Annotated[str | None, Query(min_length=7, max_length=32)] = None,
    ) -> dict[str, Any]:
        """Orders by orderbus number, by channel and external id, or by the
        buyer's phone. An order the router refused has no number: looked up by
        channel and external id, its dead letters come back as ``unrouted``."""
        if not (number or phone or (channel and external_id)):
            raise HTTPException(
                422,
                "give number, channel and external_id, or phone",
            )
        with translate_db_errors(), engine.connect() as conn:
            found = lookup.find(
                conn, number=number, channel=channel, external_id=external_id, phone=phone
            )
            unrouted = None
            if not found and channel and external_id:
                events = lookup.unrouted(conn, channel, external_id)
                if events:
                    unrouted = {"channel": channel, "external_id": external_id, "timeline": events}
        if not who.sees_personal_data:
            found = [{**o, "order": mask_value(o["order"])} for o in found]
            if unrouted:
                unrouted = mask_value(unrouted)
        return {"orders": found, "unrouted": unrouted}

    @app.get("/orders/{number}", response_model=OrderStory, tags=["orders"])
    def order_story(number: str, who: Viewer) -> dict[str, Any]:
        """The order as orderbus holds it, and its timeline: received, routed,
        status changes, held and decided, sent and delivered to each system,
        dead letters and what was done with them."""
        with translate_db_errors(), engine.connect() as conn:
            found = lookup.find(conn, number=number)
            if not found:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such order")
            story = {**found[0], "timeline": lookup.timeline(conn, number)}
        return story if who.sees_personal_data else mask_value(story)

    @app.get("/keys", response_model=list[KeyOut], tags=["keys"])
    def list_keys(_who: Admin) -> list[dict[str, Any]]:
        with translate_db_errors(), engine.connect() as conn:
            return keys.listing(conn)

    @app.post("/keys", response_model=KeyCreated, status_code=201, tags=["keys"])
    def create_key(request: KeyRequest, who: Admin) -> dict[str, Any]:
        """A new API key with a role; the key is in this answer only."""
        try:
            with translate_db_errors(), engine.begin() as conn:
                row, key = keys.create(conn, request.name, request.role, who.name)
        except keys.KeyError_ as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return {**row, "key": key}

    @app.delete("/keys/{key_id}", status_code=204, tags=["keys"])
    def revoke_key(key_id: RowId, who: Admin) -> None:
        try:
            with translate_db_errors(), engine.begin() as conn:
                keys.revoke(conn, key_id, who.name)
        except LookupError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such key") from None
        except keys.KeyError_ as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    return app
