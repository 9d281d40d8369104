"""Orders held for approval (suspected duplicates, large amounts, incomplete
addresses, first orders) or for a SKU's mapping: the queue, release (one or
two approvals; a mapping hold only once its SKUs are mapped), reject.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select

from admin_api.routes.deps import (
    MAX_OFFSET,
    MAX_PAGE,
    Context,
    Operator,
    RowId,
    Viewer,
    order_bodies,
    page,
)
from admin_api.schemas import HoldDecision, HoldOut, HoldReleased, HoldStatus, Page
from infra.database import translate_db_errors
from infra.mappings import load
from infra.masking import for_viewer
from infra.tables import holds as holds_table
from router import holds

router = APIRouter(tags=["holds"])


@router.get("/holds", response_model=Page[HoldOut])
def list_holds(
    ctx: Context,
    who: Viewer,
    status_: Annotated[HoldStatus | None, Query(alias="status")] = "open",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    c = holds_table.c
    query = select(holds_table).where(*([c.status == status_] if status_ else []))
    found = page(ctx.engine, query, c.id.desc(), limit, offset)
    if who.sees_personal_data:
        return found
    bodies = order_bodies(ctx, (row["order_number"] for row in found["items"]))
    found["items"] = [
        for_viewer(dict(row), bodies.get(row["order_number"], "")) for row in found["items"]
    ]
    return found


@router.post("/holds/{hold_id}/release", response_model=HoldReleased)
def release_hold(
    hold_id: RowId, decision: HoldDecision, ctx: Context, who: Operator
) -> dict[str, Any]:
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            tables = load(conn, ctx.mapping_required)
            sent = holds.release(
                conn, ctx.topology, hold_id, who.name, decision.note, ctx.fanout, tables
            )
            decided = conn.scalar(select(holds_table.c.status).where(holds_table.c.id == hold_id))
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such hold") from None
    except holds.HoldStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    state = "released" if decided == "released" else "awaiting second approval"
    return {"id": hold_id, "status": state, "sent": sent}


@router.post("/holds/{hold_id}/reject", status_code=204)
def reject_hold(hold_id: RowId, decision: HoldDecision, ctx: Context, who: Operator) -> None:
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            holds.reject(conn, ctx.topology, hold_id, who.name, decision.note, ctx.fanout)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such hold") from None
    except holds.HoldStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
