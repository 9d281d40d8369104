"""Who may call the admin API, and what they may do.

Three roles, each allowed what the one before it is:

- ``viewer``: read everything; personal data (phones, emails, names,
  street addresses) comes back masked;
- ``operator``: retry and discard dead letters, release and reject holds, and
  see personal data in full;
- ``admin``: manage API keys.

Keys are sent as ``Authorization: Bearer <key>``. The ones made with
``POST /keys`` (or ``orderbus keys create``) live in the ``api_keys`` table as
SHA-256 digests only, each with its role, and can be revoked. The tokens in
``ORDERBUS_ADMIN_TOKENS`` (``{"name": "token"}``) are admin keys kept in the
environment (digests in memory, compared in constant time), for the first key
and for deployments that manage keys outside orderbus. Without any key, every
call but the health checks is refused with 401; a key whose role is too low
gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from fastapi import HTTPException, Request, status
from sqlalchemy import Engine, select

from infra.database import translate_db_errors
from infra.tables import api_keys

KEY_PREFIX = "obk_"


class Role(IntEnum):
    viewer = 1
    operator = 2
    admin = 3


@dataclass(frozen=True)
class Principal:
    """The caller: the key's name (the actor in the audit log) and its role."""

    name: str
    role: Role

    @property
    def sees_personal_data(self) -> bool:
        return self.role >= Role.operator


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh API key: 32 random bytes, URL-safe, with a prefix that says what it is."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyAuth:
    def __init__(self, engine: Engine | None, tokens: Mapping[str, str]) -> None:
        self.engine = engine
        self._env = [(name, digest(token)) for name, token in tokens.items() if token]

    def principal_for(self, key: str) -> Principal | None:
        return self.principal_for_digest(digest(key))

    def principal_for_digest(self, presented: str) -> Principal | None:
        """The holder of the key with this digest (a console session keeps
        only the digest), if the key is known and not revoked."""
        found: Principal | None = None
        for name, expected in self._env:
            if hmac.compare_digest(presented, expected):
                found = Principal(name, Role.admin)
        if found is not None or self.engine is None:
            return found
        with translate_db_errors(), self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.name, api_keys.c.role).where(
                    api_keys.c.key_digest == presented, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        return Principal(row.name, Role[row.role]) if row is not None else None

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "send Authorization: Bearer <key> (POST /keys, or ORDERBUS_ADMIN_TOKENS)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = self.principal_for(key.strip())
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal

    def require(self, role: Role) -> Callable[[Request], Principal]:
        """A FastAPI dependency: the caller, if their role is at least ``role``."""

        def dependency(request: Request) -> Principal:
            principal = self.authenticate(request)
            if principal.role < role:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"{principal.name} is a {principal.role.name}; this needs {role.name}",
                )
            return principal

        return dependency
