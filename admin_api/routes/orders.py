"""Finding an order (by number, channel and external id, or phone) and its
timeline.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from admin_api import lookup
from admin_api.routes.deps import Context, Viewer
from admin_api.schemas import OrderSearch, OrderStory
from infra.database import translate_db_errors
from infra.masking import for_viewer

router = APIRouter(tags=["orders"])


@router.get("/orders", response_model=OrderSearch)
def search_orders(
    ctx: Context,
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
        raise HTTPException(422, "give number, channel and external_id, or phone")
    with translate_db_errors(), ctx.engine.connect() as conn:
        found = lookup.find(
            conn, number=number, channel=channel, external_id=external_id, phone=phone
        )
        unrouted = None
        if not found and channel and external_id:
            events = lookup.unrouted(conn, channel, external_id)
            if events:
                unrouted = {"channel": channel, "external_id": external_id, "timeline": events}
    if not who.sees_personal_data:
        found = [for_viewer(o) for o in found]
        if unrouted:
            unrouted = for_viewer(unrouted)
    return {"orders": found, "unrouted": unrouted}


@router.get("/orders/{number}", response_model=OrderStory)
def order_story(number: str, ctx: Context, who: Viewer) -> dict[str, Any]:
    """The order as orderbus holds it, and its timeline: received, routed,
    status changes, held and decided, sent and delivered to each system,
    dead letters and what was done with them."""
    with translate_db_errors(), ctx.engine.connect() as conn:
        found = lookup.find(conn, number=number)
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such order")
        story = {**found[0], "timeline": lookup.timeline(conn, number)}
    return story if who.sees_personal_data else for_viewer(story)
