"""Bearer-token authentication for the admin API.

Tokens come from ``ORDERBUS_ADMIN_TOKENS`` (``{"name": "token"}``); the name is
the actor written to the audit log. Only SHA-256 digests are kept in memory
and compared in constant time. Without any token configured, every call but
``/healthz`` is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from fastapi import HTTPException, Request, status


class TokenAuth:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._digests = [(name, _digest(token)) for name, token in tokens.items() if token]

    def actor_for(self, token: str) -> str | None:
        presented = _digest(token)
        actor = None
        for name, digest in self._digests:
            if hmac.compare_digest(presented, digest):
                actor = name
        return actor

    def __call__(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "send Authorization: Bearer <token> (see ORDERBUS_ADMIN_TOKENS)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        actor = self.actor_for(token.strip())
        if actor is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return actor


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
