"""Logging in and out, the language and time zone, and the start page.

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from admin_api.auth import Role
from console.i18n import LANGUAGES
from console.sessions import COOKIE, csrf_matches
from console.web import (
    LANGUAGE_COOKIE,
    PREFIX,
    ZONE_COOKIE,
    Anyone,
    Reader,
    back_to,
    checked_form,
    known_zones,
    see_other,
    signed_in,
    text_field,
)
from infra.audit import audit
from infra.database import translate_db_errors
from infra.tables import alerts, dead_letters, holds

router = APIRouter()
LOGIN_CSRF = "orderbus_login_csrf"
YEAR = 365 * 24 * 3600
ZONES = ("Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Tokyo", "Europe/London", "UTC")


def _login_page(viewer: Anyone, error: str = "", status_code: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = viewer.render(
        "login.html", status_code, login_csrf=token, error=error, next=back_to(viewer.request, "")
    )
    response.set_cookie(
        LOGIN_CSRF, token, httponly=True, samesite="strict", path=PREFIX, secure=_https(viewer)
    )
    return response


def _https(viewer: Anyone) -> bool:
    return viewer.request.url.scheme == "https"


@router.get("/login")
def login_form(viewer: Anyone) -> HTMLResponse:
    return _login_page(viewer)


@router.post("/login")
async def log_in(request: Request, viewer: Anyone) -> Response:
    form = await request.form(max_part_size=4096)
    presented = form.get("csrf")
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not csrf_matches(
        expected, presented if isinstance(presented, str) else None
    ):
        return _login_page(viewer, viewer._("This form has expired"), 403)
    key = text_field(form, "key", 200)
    opened = viewer.console.sessions.open(key) if key else None
    if opened is None:
        return _login_page(viewer, viewer._("Unknown or revoked key."), 401)
    token, session = opened
    with translate_db_errors(), viewer.ctx.engine.begin() as conn:
        audit(conn, session.principal.name, "console.login", "console_session", None, {})
    response = see_other(back_to(request, PREFIX + "/"))
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(viewer.console.options.session_lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=_https(viewer),
        path=PREFIX,
    )
    response.delete_cookie(LOGIN_CSRF, path=PREFIX)
    return response


@router.post("/logout")
async def log_out(request: Request) -> Response:
    viewer = signed_in(request)
    await checked_form(request, viewer)
    viewer.console.sessions.end(request.cookies.get(COOKIE))
    response = see_other(PREFIX + "/login")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/language/{language}")
def choose_language(language: str, request: Request) -> Response:
    """A preference, not a change of data: a plain link may set it."""
    response = see_other(back_to(request, PREFIX + "/"))
    if language in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=YEAR, samesite="lax", path=PREFIX)
    return response


@router.get("/zone")
def choose_zone(request: Request) -> Response:
    response = see_other(back_to(request, PREFIX + "/"))
    asked = request.query_params.get("tz", "")
    if asked in known_zones():
        response.set_cookie(ZONE_COOKIE, asked, max_age=YEAR, samesite="lax", path=PREFIX)
    return response


@router.get("/")
def start_page(viewer: Reader) -> HTMLResponse:
    with translate_db_errors(), viewer.ctx.engine.connect() as conn:
        waiting: dict[str, Any] = {
            "dead_letters": conn.scalar(
                select(func.count())
                .select_from(dead_letters)
                .where(dead_letters.c.status == "open")
            ),
            "holds": conn.scalar(
                select(func.count()).select_from(holds).where(holds.c.status == "open")
            ),
            "alerts": conn.scalar(
                select(func.count()).select_from(alerts).where(alerts.c.status == "open")
            ),
        }
    return viewer.render("home.html", waiting=waiting, zones=ZONES, is_admin=viewer.can(Role.admin))
