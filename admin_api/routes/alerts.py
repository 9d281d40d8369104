"""Incidents the alert rules found (ORDERBUS_ALERTS).

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from admin_api.routes.deps import MAX_OFFSET, MAX_PAGE, Context, Viewer, masked_rows, page
from infra.tables import alerts as alerts_table

router = APIRouter(tags=["alerts"])


@router.get("/alerts")
def list_alerts(
    ctx: Context,
    who: Viewer,
    status_: Annotated[Literal["open", "resolved"] | None, Query(alias="status")] = "open",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Incidents the alert rules found (ORDERBUS_ALERTS), open ones by default."""
    c = alerts_table.c
    query = select(alerts_table).where(*([c.status == status_] if status_ else []))
    found = page(ctx.engine, query, c.id.desc(), limit, offset)
    return masked_rows(who, found)
