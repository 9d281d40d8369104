"""Finding an order (by number, channel and external id, or phone) and its
timeline.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, status

from admin_api import lookup, raw_orders, reconcile
from admin_api.routes.deps import MAX_OFFSET, MAX_PAGE, Context, Operator, Viewer
from admin_api.routes.mappings import DryRunIn, proposal_added
from admin_api.schemas import OrderSearch, OrderStory
from infra.database import translate_db_errors
from infra.mappings import load
from infra.masking import for_viewer, viewer_body

router = APIRouter(tags=["orders"])


@router.get("/orders", response_model=OrderSearch)
def search_orders(
    ctx: Context,
    who: Viewer,
    number: str | None = None,
    channel: str | None = None,
    external_id: str | None = None,
    phone: Annotated[str | None, Query(min_length=7, max_length=32)] = None,
    phone_tail: Annotated[
        str | None, Query(pattern=r"^[0-9]{4}$", description="the phone's last 4 digits")
    ] = None,
    day: Annotated[date | None, Query(description="placed on this day (with timezone)")] = None,
    timezone: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
    status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Orders by orderbus number, by channel and external id, by the buyer's
    phone, or by its last 4 digits with a channel or a day; with no filter,
    the most recent orders. An order the router refused has no number:
    looked up by channel and external id, its dead letters come back as
    ``unrouted``."""
    if phone_tail and not (channel or day):
        raise HTTPException(422, "the last 4 digits of a phone need a channel or a day")
    since = until = None
    if day:
        try:
            since, until = reconcile.window(day, ZoneInfo(timezone))
        except (ValueError, LookupError) as exc:
            raise HTTPException(422, f"unknown timezone: {exc}") from None
    with translate_db_errors(), ctx.engine.connect() as conn:
        found = lookup.find(
            conn,
            number=number,
            channel=channel,
            external_id=external_id,
            phone=phone,
            phone_tail=phone_tail,
            since=since,
            until=until,
            status=status_,
            limit=limit,
            offset=offset,
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


@router.get("/orders/{number}/raw")
def raw_order(number: str, ctx: Context, who: Viewer) -> list[dict[str, Any]]:
    """The platform's own order (原始单): each webhook body that became one of
    this order's revisions, as it came (signatures redacted; a viewer's copy
    masked)."""
    with translate_db_errors(), ctx.engine.connect() as conn:
        found = raw_orders.of_order(conn, number)
    if who.sees_personal_data:
        return found
    return [
        {**for_viewer({k: v for k, v in r.items() if k != "body"}), "body": viewer_body(r["body"])}
        for r in found
    ]


@router.post("/orders/replay")
def replay_raw_orders(
    ctx: Context,
    _who: Operator,
    channel: Annotated[str, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="skip the newest N")] = 0,
    target: Annotated[
        str | None, Query(max_length=64, description="also map each order for this system")
    ] = None,
    proposed: DryRunIn | None = None,
) -> list[dict[str, Any]]:
    """Read the channel's newest stored webhook bodies (and the platform
    answers its fetch worker kept) again with the connector as it is now:
    which orders would read differently, and in which fields; with
    ``target``, also what that system would receive with the mapping tables
    as they are now, or with a ``proposal`` (a mapping not saved yet) added.
    Publishes nothing, calls no platform."""
    if ctx.replay is None:
        raise HTTPException(
            409, "replay is not available in this process (run the admin component)"
        )
    with translate_db_errors(), ctx.engine.connect() as conn:
        mapped_for = None
        if target:
            tables = load(conn, ctx.mapping_required)
            if proposed is not None and proposed.proposal is not None:
                tables = proposal_added(tables, proposed.proposal)
            mapped_for = (tables, target)
        return raw_orders.replay_dry(conn, ctx.replay, channel, limit, mapped_for, offset)
