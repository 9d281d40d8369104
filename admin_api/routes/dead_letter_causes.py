"""Dead letters by business cause (a SKU not mapped, a bad address, the ERP
refusing, an expired token, an endpoint down...): the groups, retrying a
fixed cause's group, and who is looking into a cause; and background retry
jobs for a filter, with progress and cancel.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse

from admin_api import causes, deadletters, retry_jobs
from admin_api.routes.deps import Context, Operator, RowId, Viewer
from admin_api.schemas import (
    CauseRetry,
    DeadLetterStatus,
    Investigation,
    RetryJobRequest,
    RetryManyResult,
)
from infra.audit import audit
from infra.database import translate_db_errors
from infra.masking import for_viewer

router = APIRouter(tags=["dead letters"])


def _known_cause(cause: str, status_code: int = 404) -> None:
    if cause not in causes.CAUSES:
        raise HTTPException(status_code, f"no cause {cause!r} (known: {', '.join(causes.CAUSES)})")


@router.get("/dead-letter-causes")
def dead_letter_causes(
    ctx: Context,
    who: Viewer,
    status_: Annotated[DeadLetterStatus | None, Query(alias="status")] = "open",
) -> list[dict[str, Any]]:
    """Dead letters grouped by business cause (a SKU not mapped, a bad address,
    the ERP refusing, an expired token, an endpoint down...), with who is
    looking into each."""
    with translate_db_errors(), ctx.engine.connect() as conn:
        found = causes.groups(conn, status_)
    return found if who.sees_personal_data else for_viewer(found)


@router.post("/dead-letter-causes/{cause}/retry", response_model=RetryManyResult)
def retry_cause(cause: str, request: CauseRetry, ctx: Context, who: Operator) -> dict[str, Any]:
    """Once a cause is fixed, retry its open dead letters (at most ``limit``);
    ``dry_run`` only counts them."""
    _known_cause(cause)
    with translate_db_errors(), ctx.engine.begin() as conn:
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


@router.put("/dead-letter-causes/{cause}/investigation", status_code=204)
def investigate_cause(cause: str, request: Investigation, ctx: Context, who: Operator) -> None:
    """Mark a cause as being looked into, by ``owner``."""
    if cause not in causes.CAUSES:
        raise HTTPException(404, f"no cause {cause!r}")
    with translate_db_errors(), ctx.engine.begin() as conn:
        causes.investigate(conn, cause, request.owner, request.note, who.name)


@router.delete("/dead-letter-causes/{cause}/investigation", status_code=204)
def close_investigation(cause: str, ctx: Context, who: Operator) -> None:
    with translate_db_errors(), ctx.engine.begin() as conn:
        if not causes.close_investigation(conn, cause, who.name):
            raise HTTPException(404, f"nobody is investigating {cause!r}")


@router.post("/retry-jobs")
def start_retry_job(request: RetryJobRequest, ctx: Context, who: Operator) -> JSONResponse:
    """Retry every open dead letter matching the filter in the background, at
    most ``rate`` a second. With ``dry_run`` it only says how many it would
    touch; otherwise 202 with the job to follow (``GET /retry-jobs/{id}``)."""
    f = request.model_dump(include={"queue", "reason", "channel", "cause"}, exclude_none=True)
    if f.get("cause"):
        _known_cause(f["cause"], 422)
    with translate_db_errors(), ctx.engine.begin() as conn:
        if request.dry_run:
            count = len(retry_jobs.matching_open(conn, f))
            return JSONResponse({"would_retry": count, "filter": f})
        job_id = retry_jobs.start(conn, f, request.rate, request.note, who.name)
        return JSONResponse(retry_jobs.progress(conn, job_id), status_code=202)


@router.get("/retry-jobs/{job_id}")
def retry_job(job_id: RowId, ctx: Context, _who: Viewer) -> dict[str, Any]:
    """Progress, and a warning when dead letters of the same filter keep arriving."""
    with translate_db_errors(), ctx.engine.connect() as conn:
        found = retry_jobs.progress(conn, job_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return found


@router.post("/retry-jobs/{job_id}/cancel", status_code=204)
def cancel_retry_job(job_id: RowId, ctx: Context, who: Operator) -> None:
    with translate_db_errors(), ctx.engine.begin() as conn:
        if not retry_jobs.cancel(conn, job_id, who.name):
            raise HTTPException(status.HTTP_409_CONFLICT, "no running job with that id")
