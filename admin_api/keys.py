"""Creating and revoking admin API keys (the admin API's ``/keys`` and
``orderbus keys``): a key is shown once; only its SHA-256 digest is stored.
Each change is in the audit log, with before and after."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from admin_api.auth import Role, digest, new_key
from infra.audit import audit
from infra.tables import api_keys


class KeyError_(Exception):  # noqa: N801 - not the builtin KeyError
    """The key cannot be made or revoked; the message says why."""


def create(conn: Connection, name: str, role: str, by: str) -> tuple[dict[str, Any], str]:
    """A new key's row (without its digest) and the key itself."""
    if role not in Role.__members__:
        raise KeyError_(f"role must be one of {', '.join(Role.__members__)}")
    if conn.scalar(select(api_keys.c.id).where(api_keys.c.name == name)) is not None:
        raise KeyError_(f"a key named {name!r} exists")
    key = new_key()
    row = {
        "name": name,
        "role": role,
        "key_digest": digest(key),
        "created_at": datetime.now(UTC),
        "created_by": by,
    }
    inserted = conn.execute(insert(api_keys).values(**row)).inserted_primary_key
    key_id = int(inserted[0]) if inserted else 0
    audit(
        conn,
        by,
        "key.create",
        "api_key",
        str(key_id),
        {"before": None, "after": {"name": name, "role": role}},
    )
    shown = {k: v for k, v in row.items() if k != "key_digest"}
    return {**shown, "id": key_id, "revoked_at": None}, key


def revoke(conn: Connection, key_id: int, by: str) -> None:
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise LookupError(key_id)
    if row["revoked_at"] is not None:
        raise KeyError_("the key is already revoked")
    conn.execute(
        update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=datetime.now(UTC))
    )
    audit(
        conn,
        by,
        "key.revoke",
        "api_key",
        str(key_id),
        {"before": {"revoked": False}, "after": {"revoked": True}, "name": row["name"]},
    )


def listing(conn: Connection) -> list[dict[str, Any]]:
    cols = [c for c in api_keys.c if c.name != "key_digest"]
    return [dict(r) for r in conn.execute(select(*cols).order_by(api_keys.c.id)).mappings()]
