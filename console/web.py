"""What every console page shares: the viewer (session, role, language,
time zone), rendering a template in their language, CSRF-checked forms, and
the pages a request ends on when it cannot go on (log in, not allowed,
expired form, not found, the database away).

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, available_timezones

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from admin_api.auth import Principal, Role
from admin_api.routes.deps import AdminContext
from console.day_figures import DayFigures
from console.i18n import N_, Formats, Gettext, gettext_for, language_of
from console.sessions import COOKIE, SessionStore, csrf_matches
from infra.masking import for_viewer

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGE_COOKIE = "orderbus_lang"
ZONE_COOKIE = "orderbus_tz"
PREFIX = "/console"
MAX_FORM_BYTES = 20 * 1024 * 1024  # an uploaded export at most

# The menu: (path, label, the role it needs). Labels are message ids.
MENU: tuple[tuple[str, str, Role], ...] = (
    ("/orders", N_("Find an order"), Role.viewer),
    ("/exceptions", N_("Exceptions"), Role.viewer),
    ("/approvals", N_("Approvals"), Role.viewer),
    ("/reconciliation", N_("Reconciliation"), Role.viewer),
    ("/mappings", N_("SKU mapping"), Role.viewer),
    ("/reports", N_("Reports"), Role.viewer),
    ("/dashboard", N_("Dashboard"), Role.viewer),
    ("/channels", N_("Channels and health"), Role.viewer),
    ("/admin", N_("Keys and audit"), Role.admin),
)


# Words the records use for states and roles, as a person reads them.
WORDS: Mapping[str, str] = {
    "open": N_("open"),
    "retried": N_("retried"),
    "discarded": N_("discarded"),
    "running": N_("running"),
    "done": N_("done"),
    "cancelled": N_("cancelled"),
    "viewer": N_("viewer"),
    "operator": N_("operator"),
    "admin": N_("admin"),
    "resolved": N_("resolved"),
}
HOLD_WORDS: Mapping[str, str] = {
    "open": N_("waiting"),
    "released": N_("approved"),
    "rejected": N_("rejected"),
}


@dataclass(frozen=True)
class ConsoleOptions:
    """From the settings (ORDERBUS_CONSOLE_*)."""

    session_lifetime: timedelta = timedelta(hours=8)
    timezone: str = "Asia/Shanghai"
    dashboard_refresh_seconds: int = 10
    channels: tuple[str, ...] = ()  # the configured channels, listed even before their first order
    # When each credential expires (ORDERBUS_ALERTS' credentials rule): name -> moment.
    credentials_expire: Mapping[str, datetime] = field(default_factory=dict)


@dataclass
class Console:
    """The console's shared parts, on the console app's state."""

    ctx: AdminContext
    sessions: SessionStore
    options: ConsoleOptions
    env: Environment = field(init=False)
    day_figures: DayFigures = field(default_factory=DayFigures)  # the dashboard's settled hours

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html", "svg"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )


class LoginNeeded(Exception):
    pass


class NotAllowed(Exception):
    def __init__(self, needed: Role) -> None:
        self.needed = needed


class FormExpired(Exception):
    """A state-changing form without this session's CSRF token."""


class NotFound(Exception):
    pass


@cache
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def chosen_language(request: Request) -> str:
    return language_of(request.cookies.get(LANGUAGE_COOKIE))


def chosen_zone(request: Request, default: str) -> ZoneInfo:
    asked = request.cookies.get(ZONE_COOKIE)
    return ZoneInfo(asked if asked in known_zones() else default)


@dataclass
class Viewer:
    """The person looking at a page: who, in what language and zone."""

    request: Request
    console: Console
    principal: Principal | None
    csrf: str
    formats: Formats
    _: Gettext

    @property
    def ctx(self) -> AdminContext:
        return self.console.ctx

    @property
    def name(self) -> str:
        """Who acts, as the audit log names them."""
        return self.principal.name if self.principal else ""

    @property
    def sees_personal_data(self) -> bool:
        return self.principal is not None and self.principal.sees_personal_data

    def can(self, role: Role) -> bool:
        return self.principal is not None and self.principal.role >= role

    def need(self, role: Role) -> None:
        if not self.can(role):
            raise NotAllowed(role)

    def masked(self, value: Any, *more: Any) -> Any:
        """``value`` as this viewer may read it (a viewer: personal data masked)."""
        return value if self.sees_personal_data else for_viewer(value, *more)

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        page = self.console.env.get_template(template)
        html = page.render(
            _=self._,
            fmt=self.formats,
            who=self.principal,
            csrf=self.csrf,
            lang=self.formats.language,
            zone=self.formats.zone.key,
            menu=[(PREFIX + p, label) for p, label, role in MENU if self.can(role)],
            here=self.request.url.path,
            here_full=_here(self.request),
            prefix=PREFIX,
            Role=Role,
            can=self.can,
            word=lambda value: self._(WORDS.get(value, value)),
            hold_word=lambda value: self._(HOLD_WORDS.get(value, value)),
            **values,
        )
        return HTMLResponse(html, status_code=status_code)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def anonymous(request: Request) -> Viewer:
    console = console_of(request)
    language = chosen_language(request)
    formats = Formats(language, chosen_zone(request, console.options.timezone))
    return Viewer(request, console, None, "", formats, gettext_for(language))


def signed_in(request: Request) -> Viewer:
    viewer = anonymous(request)
    session = viewer.console.sessions.find(request.cookies.get(COOKIE))
    if session is None:
        raise LoginNeeded()
    viewer.principal = session.principal
    viewer.csrf = session.csrf_token
    return viewer


def _role(role: Role) -> Any:
    def dependency(request: Request) -> Viewer:
        viewer = signed_in(request)
        viewer.need(role)
        return viewer

    return dependency


Anyone = Annotated[Viewer, Depends(anonymous)]
Reader = Annotated[Viewer, Depends(_role(Role.viewer))]
OperatorPage = Annotated[Viewer, Depends(_role(Role.operator))]
AdminPage = Annotated[Viewer, Depends(_role(Role.admin))]


async def checked_form(request: Request, viewer: Viewer) -> FormData:
    """The posted form, if it carries this session's CSRF token."""
    form = await request.form(max_part_size=MAX_FORM_BYTES)
    token = form.get("csrf")
    if not csrf_matches(viewer.csrf, token if isinstance(token, str) else None):
        raise FormExpired()
    return form


def text_field(form: FormData | Mapping[str, Any], name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def back_to(request: Request, fallback: str) -> str:
    """A ``next`` that stays inside the console (never an open redirect)."""
    asked = request.query_params.get("next") or ""
    if asked.startswith(PREFIX + "/") and not asked.startswith("//") and "\\" not in asked:
        return asked
    return fallback


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> Response:
    return see_other(f"{PREFIX}/login?next={quote(_here(request), safe='/')}")


def problem_page(request: Request, status_code: int, title: str, advice: str) -> HTMLResponse:
    viewer = anonymous(request)
    return viewer.render(
        "problem.html",
        status_code,
        title=viewer._(title),
        advice=viewer._(advice),
    )
