"""Console sessions: an API key, typed once at the login page, exchanged for
a cookie.

The cookie holds a random token; the database keeps its SHA-256 digest, the
digest of the key it stands for, the session's CSRF token and its expiry. On
every request the key is looked up again, so revoking a key (or lowering its
role) takes effect at the next click. The cookie is HttpOnly and
SameSite=Strict (and Secure when the console is served over HTTPS); every
state-changing form also carries the session's CSRF token, compared in
constant time.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from admin_api.auth import KeyAuth, Principal, digest
from infra.database import translate_db_errors
from infra.tables import console_sessions

COOKIE = "orderbus_session"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: datetime


class SessionStore:
    def __init__(self, engine: Engine, auth: KeyAuth, lifetime: timedelta) -> None:
        self.engine = engine
        self.auth = auth
        self.lifetime = lifetime

    def open(self, key: str) -> tuple[str, Session] | None:
        """A new session for the holder of ``key`` (None: no such key)."""
        key_digest = digest(key.strip())
        principal = self.auth.principal_for_digest(key_digest)
        if principal is None:
            return None
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = Session(principal, secrets.token_urlsafe(32), now + self.lifetime)
        with translate_db_errors(), self.engine.begin() as conn:
            conn.execute(
                delete(console_sessions).where(console_sessions.c.expires_at < now)
            )  # expired ones are of no use to anybody
            conn.execute(
                insert(console_sessions).values(
                    token_digest=digest(token),
                    key_digest=key_digest,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session this cookie token stands for, if any."""
        if not token:
            return None
        c = console_sessions.c
        with translate_db_errors(), self.engine.connect() as conn:
            row = conn.execute(
                select(c.key_digest, c.csrf_token, c.expires_at).where(
                    c.token_digest == digest(token), c.ended_at.is_(None)
                )
            ).first()
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires <= datetime.now(UTC):
            return None
        principal = self.auth.principal_for_digest(row.key_digest)
        if principal is None:  # the key was revoked
            return None
        return Session(principal, row.csrf_token, expires)

    def end(self, token: str | None) -> None:
        if not token:
            return
        c = console_sessions.c
        with translate_db_errors(), self.engine.begin() as conn:
            conn.execute(
                update(console_sessions)
                .where(c.token_digest == digest(token), c.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC))
            )


def csrf_matches(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected, presented or "")
