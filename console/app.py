"""The console app, mounted by the admin process at ``/console``.

Each group of pages is one ``APIRouter`` in console/pages/; this factory
puts the shared parts on the app, serves the shipped static files, and turns
the exceptions a page can end in into pages a person can act on.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from admin_api.routes.deps import AdminContext
from canonical.errors import TransientError
from console.i18n import N_
from console.pages import (
    admin,
    approvals,
    channels,
    dashboard,
    exceptions,
    mappings,
    orders,
    reconciliation,
    reports,
    session,
)
from console.sessions import SessionStore
from console.web import (
    Console,
    ConsoleOptions,
    FormExpired,
    LoginNeeded,
    NotAllowed,
    NotFound,
    login_redirect,
    problem_page,
)

STATIC = Path(__file__).parent / "static"
PAGES = (
    session,
    orders,
    exceptions,
    approvals,
    reconciliation,
    mappings,
    reports,
    dashboard,
    channels,
    admin,
)
SECURITY_HEADERS = {
    # Only our own files: nothing from a CDN, no inline script.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_console(ctx: AdminContext, options: ConsoleOptions | None = None) -> FastAPI:
    options = options or ConsoleOptions()
    app = FastAPI(title="orderbus console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = Console(
        ctx, SessionStore(ctx.engine, ctx.auth, options.session_lifetime), options
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in PAGES:
        app.include_router(module.router)
    _handle_endings(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            if name == "Cache-Control" and request.url.path.startswith("/console/static/"):
                continue
            response.headers.setdefault(name, value)
        return response

    return app


def _handle_endings(app: FastAPI) -> None:
    async def login(request: Request, _exc: Exception) -> Response:
        return login_redirect(request)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotAllowed)
        return problem_page(
            request,
            403,
            N_("Not allowed"),
            N_("Your key's role cannot do this. Ask an administrator for an operator key."),
        )

    async def expired(request: Request, _exc: Exception) -> Response:
        return problem_page(
            request,
            403,
            N_("This form has expired"),
            N_("Nothing was changed. Go back, reload the page and try again."),
        )

    async def not_found(request: Request, _exc: Exception) -> Response:
        return problem_page(request, 404, N_("Not found"), N_("Check the number and search again."))

    async def unavailable(request: Request, _exc: Exception) -> Response:
        response = problem_page(
            request,
            503,
            N_("The database is not answering"),
            N_(
                "Nothing was changed. Wait a minute and reload; "
                "if it lasts, tell the administrator."
            ),
        )
        response.headers["Retry-After"] = "5"
        return response

    app.add_exception_handler(LoginNeeded, login)
    app.add_exception_handler(NotAllowed, not_allowed)
    app.add_exception_handler(FormExpired, expired)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(TransientError, unavailable)
