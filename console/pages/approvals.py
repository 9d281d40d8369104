"""Approvals (approvers): the orders held for a person, why each is held, a
suspected duplicate beside the order it seems to repeat, approve or reject
with a note, and two different people for a large order.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from admin_api.auth import Role
from console.hold_reasons import reasons_in_words
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
from infra.mappings import load
from infra.tables import holds as holds_table
from infra.tables import orders
from router import holds

router = APIRouter()
PAGE_SIZE = 50
STATES = ("open", "released", "rejected")


def _orders_by_number(viewer: Viewer, numbers: set[str]) -> dict[str, dict[str, Any]]:
    if not numbers:
        return {}
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        rows = conn.execute(
            select(orders.c.order_number, orders.c.channel, orders.c.status, orders.c.body).where(
                orders.c.order_number.in_(sorted(numbers))
            )
        ).mappings()
        return {r["order_number"]: {**dict(r), "order": json.loads(r["body"])} for r in rows}


@router.get("/approvals")
def approval_queue(viewer: Reader, state: str = "open", page: int = 0) -> HTMLResponse:
    state = state if state in STATES else "open"
    page = max(0, min(page, 10_000))
    c = holds_table.c
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(holds_table).where(c.status == state))
        rows = [
            dict(r)
            for r in conn.execute(
                select(holds_table)
                .where(c.status == state)
                .order_by(c.id.desc())
                .limit(PAGE_SIZE)
                .offset(page * PAGE_SIZE)
            ).mappings()
        ]
    found = _orders_by_number(viewer, {r["order_number"] for r in rows})
    items = [
        {
            **r,
            "why": reasons_in_words(viewer._, r["reason"]),
            "o": viewer.masked(found.get(r["order_number"], {})),
        }
        for r in rows
    ]
    return viewer.render(
        "approvals.html",
        items=items,
        state=state,
        states=STATES,
        total=total or 0,
        page=page,
        more=(page + 1) * PAGE_SIZE < (total or 0),
    )


def _hold(viewer: Viewer, hold_id: int) -> dict[str, Any]:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        row = (
            conn.execute(
                select(holds_table).where(holds_table.c.id == min(max(hold_id, 0), 2**63 - 1))
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound()
    return dict(row)


@router.get("/approvals/{hold_id}")
def approval_page(hold_id: int, viewer: Reader) -> HTMLResponse:
    return _approval_page(viewer, hold_id)


def _approval_page(
    viewer: Viewer, hold_id: int, message: str = "", status_code: int = 200
) -> HTMLResponse:
    hold = _hold(viewer, hold_id)
    wanted = {hold["order_number"], *([hold["suspected_of"]] if hold["suspected_of"] else [])}
    found = _orders_by_number(viewer, wanted)
    held = found.get(hold["order_number"], {})
    twin = found.get(hold["suspected_of"] or "", None)
    return viewer.render(
        "approval.html",
        status_code,
        h=hold,
        why=reasons_in_words(viewer._, hold["reason"]),
        held=viewer.masked(held),
        twin=viewer.masked(twin) if twin else None,
        message=message,
        may_act=viewer.can(Role.operator),
    )


@router.post("/approvals/{hold_id}/{decision}")
async def decide(hold_id: int, decision: str, request: Request, viewer: OperatorPage) -> Response:
    form = await checked_form(request, viewer)
    note = text_field(form, "note", 500) or None
    by = viewer.name
    if decision == "reject" and not note:
        return _approval_page(viewer, hold_id, viewer._("Say why it is rejected."), 422)
    try:
        with translate_db_errors(), viewer.ctx.engine.begin() as conn:
            if decision == "approve":
                tables = load(conn, viewer.ctx.mapping_required)
                holds.release(
                    conn, viewer.ctx.topology, hold_id, by, note, viewer.ctx.fanout, tables
                )
            elif decision == "reject":
                holds.reject(conn, viewer.ctx.topology, hold_id, by, note, viewer.ctx.fanout)
            else:
                raise NotFound()
    except KeyError:
        raise NotFound() from None
    except holds.HoldStateError as exc:
        hold = _hold(viewer, hold_id)
        if isinstance(exc, holds.StillUnmapped):
            text = viewer._(
                "Not released: platform SKU %(skus)s still has no mapping. Add it on the SKU "
                "mapping page first, or reject the order.",
                skus=", ".join(exc.skus),
            )
        elif hold["status"] == "open" and hold["approved_by"] == by:
            text = viewer._(
                "You approved it already. A second, different person must approve a large order."
            )
        else:
            text = viewer._("Nothing done: it was already decided (%(why)s).", why=str(exc))
        return _approval_page(viewer, hold_id, text, 409)
    return see_other(f"{PREFIX}/approvals/{hold_id}")
