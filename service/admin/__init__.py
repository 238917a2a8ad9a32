"""The admin listener (DESIGN §9): a JSON API and a web console for the person on call.

It is a Starlette app of its own, served on `[admin] host:port` beside the webhook app (never on
the webhook port) and sharing its `AppState`: the same buffer, store and config. Off unless the
config has an `[admin]` table.

- `service.admin.api`     the JSON API under `/api/` (and `/api/openapi.json`)
- `service.admin.console` the pages: lanes, dead letters, an order's timeline, the login form
- `service.admin.replay`  replaying and discarding dead letters
- `service.admin.views`   what leaves the process, as Structs (no personal data)
- `service.admin.auth`    bearer tokens and the console's cookie
"""

from __future__ import annotations

import secrets
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.admin.api import api_routes, error
from service.admin.auth import authenticated
from service.admin.console import console_routes
from service.admin.replay import InProgress
from service.app import AppState

__all__ = ["AdminTokens", "create_admin_app"]

_STATIC = Path(__file__).parent / "static"
#: paths anyone may open: the login form and the files it needs
_OPEN = ("/login", "/static/")


class AdminTokens:
    """The tokens in force: the config's (re-read on every request, so a SIGHUP reload rotates
    them), or — with the sandbox and no token configured — one made up at start."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        self.generated = secrets.token_urlsafe(24)

    def current(self) -> tuple[str, ...]:
        admin = self._state.config.admin
        if admin is None or admin.token == "":
            return (self.generated,) if self._state.config.sendcloud.is_sandbox else ()
        return admin.tokens


class _RequireToken:
    """Every request but the login form's needs a token: the API answers 401 (and nothing else),
    a page sends the browser to the login form."""

    def __init__(self, app: ASGIApp, tokens: AdminTokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"].startswith(_OPEN):
            await self.app(scope, receive, _with_page_headers(send))
            return
        if scope["type"] != "http":  # no websockets here
            return
        if authenticated(HTTPConnection(scope), self.tokens.current()):
            await self.app(scope, receive, _with_page_headers(send))
            return
        if scope["path"].startswith("/api/"):
            response: Response = error(401, "unauthorized", "Unauthorized.")
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = RedirectResponse("/login", status_code=303)
        await response(scope, receive, send)


#: every answer: no framing (a page on another local port is same-site and could frame the
#: console to trick a click), nothing loaded from elsewhere, no sniffing, no referrer
_PAGE_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def _with_page_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_PAGE_HEADERS]
        await send(message)

    return sending


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error(status, {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error"), "Not here.")


def create_admin_app(state: AppState) -> Starlette:
    """The admin app over the service's state (`create_app(...).state.order_bridge`)."""
    tokens = AdminTokens(state)
    routes = [*api_routes(), *console_routes(tokens), Mount("/static", StaticFiles(directory=_STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.order_bridge = state
    app.state.admin_tokens = tokens
    app.state.admin_busy = InProgress()
    app.add_middleware(_RequireToken, tokens=tokens)
    return app
