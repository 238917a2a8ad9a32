"""The web console: server-rendered pages (Starlette's Jinja2 templates) and one small script,
`static/console.js`, that refreshes the lanes and sends the buttons' requests to the JSON API.
No build step and nothing from a CDN: it works in a cluster without internet.

Pages: `/` lanes at a glance, `/dead-letters` with replay, discard and bulk replay by reason,
`/orders` an order's timeline by id or number, `/login` the token form.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from service.admin.api import DEFAULT_PAGE, BadParameter, lanes, order_record, parse_filter
from service.admin.auth import COOKIE, console_cookie, token_matches
from service.admin.views import StepView, letter_view
from service.app import AppState

if TYPE_CHECKING:
    from service.admin import AdminTokens

__all__ = ["console_routes"]

_TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def step_facts(step: StepView) -> list[str]:
    """A history step's facts as short phrases, for the timeline."""
    facts = [
        f"topic {step.topic}" if step.topic else None,
        f"delivery {step.delivery_id}" if step.delivery_id else None,
        f"batch {step.batch_id} (attempt {step.attempt})" if step.batch_id else None,
        f"Sendcloud id {step.sendcloud_id}" if step.sendcloud_id else None,
        step.reason,
        step.pointer,
        step.detail,
        f"dead letter {step.dead_letter_id}" if step.dead_letter_id else None,
    ]
    return [fact for fact in facts if fact]


_TEMPLATES.env.filters["facts"] = step_facts
#: the console's cookie lives as long as a working day
_COOKIE_SECONDS = 12 * 3600
#: the login form holds one token
_MAX_LOGIN_BODY = 4096


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.order_bridge
    return state


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    return _TEMPLATES.TemplateResponse(request, name, context, status_code=status)


async def lanes_page(request: Request) -> Response:
    return _page(request, "lanes.html", lanes=lanes(_state(request)), page="lanes")


async def dead_letters_page(request: Request) -> Response:
    state = _state(request)
    params = request.query_params
    try:
        chosen = parse_filter(params)
        cursor = params.get("cursor", "")
        after = int(cursor) if cursor.isascii() and cursor.isdigit() and len(cursor) <= 19 else 0
    except BadParameter as exc:
        return _page(request, "dead_letters.html", 400, problem=str(exc), letters=[], reasons=[], page="dead")
    letters = await state.store.dead_letters(
        chosen.integration_id, DEFAULT_PAGE + 1, reason=chosen.reason, since=chosen.since, after=after
    )
    page, more = letters[:DEFAULT_PAGE], len(letters) > DEFAULT_PAGE
    reasons = sorted({x.reason for x in await state.store.dead_letters()})
    return _page(
        request,
        "dead_letters.html",
        letters=[letter_view(x) for x in page],
        next_cursor=page[-1].id if more else None,
        reasons=reasons,
        integrations=sorted(state.integrations),
        chosen=chosen,
        page="dead",
    )


async def order_page(request: Request) -> Response:
    state = _state(request)
    params = request.query_params
    key = params.get("q", "").strip()
    raw_id = params.get("integration_id", "")
    context: dict[str, Any] = {"integrations": sorted(state.integrations), "q": key, "page": "orders"}
    if not key and not raw_id:
        return _page(request, "order.html", record=None, **context)
    if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 19) or not key:
        return _page(request, "order.html", 400, record=None, problem="Choose an integration and an order.", **context)
    context["integration_id"] = int(raw_id)
    record = await order_record(state, int(raw_id), key)
    if record is None:
        problem = f"No history for order {key} in integration {raw_id}."
        return _page(request, "order.html", 404, record=None, problem=problem, **context)
    return _page(request, "order.html", record=record, **context)


def console_routes(tokens: AdminTokens) -> list[Route]:
    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _page(request, "login.html", page="login")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_LOGIN_BODY:
                return _page(request, "login.html", 413, problem="That form is too large.", page="login")
        form = parse_qs(body.decode(errors="replace"))
        given = (form.get("token") or [""])[0].strip()
        if not given or not token_matches(given, tokens.current()):
            return _page(request, "login.html", 401, problem="That token is not valid.", page="login")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            console_cookie(given),
            max_age=_COOKIE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict")
        return response

    return [
        Route("/", lanes_page, methods=["GET"]),
        Route("/dead-letters", dead_letters_page, methods=["GET"]),
        Route("/orders", order_page, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/login/out", logout, methods=["POST"]),
    ]
