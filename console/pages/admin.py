"""Keys and audit (the admin): API keys (a new key is shown once; revoke),
and the audit log with each change's before and after.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from admin_api import keys
from admin_api.auth import Role
from console.web import PREFIX, AdminPage, NotFound, Viewer, checked_form, see_other, text_field
from infra.database import translate_db_errors
from infra.tables import audit_log

router = APIRouter()
PAGE_SIZE = 50


def _page(
    viewer: Viewer,
    *,
    created: str = "",
    error: str = "",
    actor: str = "",
    page: int = 0,
    status_code: int = 200,
) -> HTMLResponse:
    query = select(audit_log)
    if actor:
        query = query.where(audit_log.c.actor == actor)
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        listed = keys.listing(conn)
        entries = [
            {**dict(r), "detail_text": json.dumps(r["detail"], ensure_ascii=False, default=str)}
            for r in conn.execute(
                query.order_by(audit_log.c.id.desc()).limit(PAGE_SIZE).offset(page * PAGE_SIZE)
            ).mappings()
        ]
    return viewer.render(
        "admin.html",
        status_code,
        keys=listed,
        entries=entries,
        created=created,
        error=error,
        actor=actor,
        page=page,
        roles=[r.name for r in Role],
    )


@router.get("/admin")
def admin_page(viewer: AdminPage, actor: str = "", page: int = 0) -> HTMLResponse:
    return _page(viewer, actor=actor.strip()[:100], page=max(0, min(page, 10_000)))


@router.post("/admin/keys")
async def create_key(request: Request, viewer: AdminPage) -> Response:
    form = await checked_form(request, viewer)
    name, role = text_field(form, "name", 100), text_field(form, "role", 16)
    if not name:
        return _page(
            viewer, error=viewer._("Give the key a name (who will use it)."), status_code=422
        )
    try:
        with translate_db_errors(), viewer.ctx.engine.begin() as conn:
            _, key = keys.create(conn, name, role, viewer.name)
    except keys.KeyError_ as exc:
        return _page(
            viewer, error=viewer._("The key was not made: %(why)s", why=str(exc)), status_code=422
        )
    return _page(viewer, created=key)


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: int, request: Request, viewer: AdminPage) -> Response:
    await checked_form(request, viewer)
    try:
        with translate_db_errors(), viewer.ctx.engine.begin() as conn:
            keys.revoke(conn, key_id, viewer.name)
    except LookupError:
        raise NotFound() from None
    except keys.KeyError_:
        pass  # revoked already: the page shows it
    return see_other(f"{PREFIX}/admin")
