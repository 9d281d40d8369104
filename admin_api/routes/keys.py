"""API keys: list, create (the key is shown once), revoke. Admins only.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from typing import Any

from fastapi import APIRouter, HTTPException, status

from admin_api import keys
from admin_api.routes.deps import Admin, Context, RowId
from admin_api.schemas import KeyCreated, KeyOut, KeyRequest
from infra.database import translate_db_errors

router = APIRouter(tags=["keys"])


@router.get("/keys", response_model=list[KeyOut])
def list_keys(ctx: Context, _who: Admin) -> list[dict[str, Any]]:
    with translate_db_errors(), ctx.engine.connect() as conn:
        return keys.listing(conn)


@router.post("/keys", response_model=KeyCreated, status_code=201)
def create_key(request: KeyRequest, ctx: Context, who: Admin) -> dict[str, Any]:
    """A new API key with a role; the key is in this answer only."""
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            row, key = keys.create(conn, request.name, request.role, who.name)
    except keys.KeyError_ as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return {**row, "key": key}


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: RowId, ctx: Context, who: Admin) -> None:
    try:
        with translate_db_errors(), ctx.engine.begin() as conn:
            keys.revoke(conn, key_id, who.name)
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such key") from None
    except keys.KeyError_ as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
