"""The admin JSON API (DESIGN §9): lanes, dead letters and replay, an order's history.

Every answer is JSON; errors are `{"error": <code>, "detail": <sentence>}` like the webhook
side's. Query parameters are checked and a bad one is named (400); a change the store could not
commit answers 503 + Retry-After and changed nothing. The document at `/api/openapi.json` is
`openapi_document()`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.admin.replay import InProgress, NotReplayable, ReplayResult, discard, replay
from service.admin.views import LaneView, LetterView, StepView, lane_view, letter_view, step_view
from service.app import AppState
from service.buffer import BufferClosed, BufferFull
from service.store import StoreUnavailable

__all__ = ["BadParameter", "Filter", "OrderRecord", "api_routes", "lanes", "openapi_document", "order_record"]

_log = structlog.get_logger("order_bridge.admin")

#: dead letters per page at most (and by default), and per bulk replay
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_BULK = 1000
RETRY_AFTER_SECONDS = 30


class BadParameter(Exception):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")


def json_response(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers)


def error(status: int, code: str, detail: str) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return json_response(status, {"error": code, "detail": detail}, headers)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.order_bridge
    return state


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def _answers_unavailable(endpoint: Endpoint) -> Endpoint:
    """A change the store or the buffer cannot take now: 503 + Retry-After, nothing changed."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        if request.method != "GET" and _state(request).shutting_down:
            return error(503, "shutting_down", "The service is shutting down; retry after it restarted.")
        try:
            return await endpoint(request)
        except BadParameter as exc:
            return error(400, "invalid_parameter", str(exc))
        except _UnknownLane:
            return error(404, "unknown_integration", "No such integration or lane.")
        except StoreUnavailable:
            return error(503, "store_unavailable", "The store cannot commit now; nothing was changed. Retry later.")
        except BufferFull:
            return error(503, "buffer_full", "Too many orders are waiting; retry later.")
        except BufferClosed:
            return error(503, "shutting_down", "The service is shutting down; retry after it restarted.")

    return wrapped


# ---------------------------------------------------------------- parameters


class Filter(msgspec.Struct, frozen=True):
    integration_id: int | None = None
    reason: str | None = None
    #: POSIX seconds
    since: float | None = None


def _integer(name: str, text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not low <= int(text) <= high:
        raise BadParameter(name, f"expected a whole number from {low} to {high}")
    return int(text)


def _since(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter("since", "expected an ISO 8601 time, e.g. 2026-12-03T10:00:00Z") from None
    if moment.tzinfo is None:
        raise BadParameter("since", "expected a time with its offset, e.g. 2026-12-03T10:00:00Z")
    return moment.timestamp()


def parse_filter(params: Mapping[str, str]) -> Filter:
    """`integration_id`, `reason` and `since` from query parameters (or a bulk replay's body)."""
    integration = params.get("integration_id")
    since = params.get("since")
    return Filter(
        integration_id=_integer("integration_id", integration, 1, 2**62) if integration else None,
        reason=params.get("reason") or None,
        since=_since(since) if since else None,
    )


def _path_int(request: Request, name: str) -> int:
    return _integer(name, request.path_params[name], 1, 2**62)


# ---------------------------------------------------------------- lanes


def lanes(state: AppState) -> list[LaneView]:
    """Every configured integration's lane, and any other lane the store still holds."""
    platforms: dict[int, str | None] = {i: item.config.platform for i, item in state.integrations.items()}
    for integration_id in (*state.store.lanes(), *state.store.paused()):
        platforms.setdefault(integration_id, None)
    return [lane_view(state.buffer, i, platforms[i]) for i in sorted(platforms)]


async def list_lanes(request: Request) -> Response:
    return json_response(200, {"lanes": lanes(_state(request))})


class _UnknownLane(Exception):
    pass


def _lane_id(request: Request) -> int:
    """The path's integration id, if it is configured or has a lane (`_UnknownLane` otherwise)."""
    state = _state(request)
    integration_id = _path_int(request, "integration_id")
    if integration_id not in state.integrations and state.buffer.lane(integration_id) is None:
        raise _UnknownLane
    return integration_id


def _lane_answer(request: Request, status: int, integration_id: int) -> Response:
    state = _state(request)
    integration = state.integrations.get(integration_id)
    platform = integration.config.platform if integration is not None else None
    return json_response(status, lane_view(state.buffer, integration_id, platform))


@_answers_unavailable
async def flush_lane(request: Request) -> Response:
    integration_id = _lane_id(request)
    buffer = _state(request).buffer
    lane = buffer.lane(integration_id)
    if lane is not None and lane.paused:
        return error(409, "lane_paused", "The lane is paused: resume it to send its orders.")
    buffer.flush(integration_id, retry_now=True)
    _log.info("lane.flush_requested", integration_id=integration_id)
    return _lane_answer(request, 202, integration_id)


def _pauser(paused: bool) -> Endpoint:
    @_answers_unavailable
    async def endpoint(request: Request) -> Response:
        integration_id = _lane_id(request)
        await _state(request).buffer.pause(integration_id, paused)
        return _lane_answer(request, 200, integration_id)

    return endpoint


# ---------------------------------------------------------------- dead letters


@_answers_unavailable
async def list_dead_letters(request: Request) -> Response:
    params = request.query_params
    chosen = parse_filter(params)
    limit = _integer("limit", params["limit"], 1, MAX_PAGE) if params.get("limit") else DEFAULT_PAGE
    after = _integer("cursor", params["cursor"], 0, 2**62) if params.get("cursor") else 0
    letters = await _state(request).store.dead_letters(
        chosen.integration_id, limit + 1, reason=chosen.reason, since=chosen.since, after=after
    )
    page, more = letters[:limit], len(letters) > limit
    return json_response(
        200,
        {"dead_letters": [letter_view(x) for x in page], "next_cursor": str(page[-1].id) if more else None},
    )


def _busy(request: Request) -> InProgress:
    busy: InProgress = request.app.state.admin_busy
    return busy


_GONE = "No such dead letter (replayed, discarded or expired?)."


@_answers_unavailable
async def replay_one(request: Request) -> Response:
    try:
        result = await replay(_state(request), _path_int(request, "letter_id"), _busy(request))
    except NotReplayable as exc:
        return error(409, exc.code, exc.detail)
    if result is None:
        return error(404, "not_found", _GONE)
    return json_response(200, result)


class BulkReplay(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    integration_id: int | None = None
    reason: str | None = None
    since: str | None = None


@_answers_unavailable
async def replay_many(request: Request) -> Response:
    """Replay every letter matching the filter in the body (at most `MAX_BULK`), oldest first."""
    state = _state(request)
    body = await request.body()
    try:
        wanted = msgspec.json.decode(body or b"{}", type=BulkReplay)
    except msgspec.DecodeError as exc:
        return error(400, "invalid_body", f"expected a JSON object with integration_id, reason, since: {exc}")
    text = {k: str(v) for k, v in msgspec.structs.asdict(wanted).items() if v is not None}
    chosen = parse_filter(text)
    letters = await state.store.dead_letters(
        chosen.integration_id, MAX_BULK + 1, reason=chosen.reason, since=chosen.since
    )
    counts = {"buffered": 0, "coalesced": 0, "stale": 0, "failed": 0, "not_replayable": 0, "gone": 0}
    results: list[ReplayResult | dict[str, object]] = []
    stopped: str | None = None
    for letter in letters[:MAX_BULK]:
        try:
            result = await replay(state, letter.id, _busy(request))
        except NotReplayable as exc:
            counts["not_replayable"] += 1
            results.append({"id": letter.id, "status": "not_replayable", "reason": exc.code})
            continue
        except (StoreUnavailable, BufferFull, BufferClosed) as exc:
            # what was replayed so far stays replayed; the rest are still dead letters
            stopped = _STOP_CODES[type(exc)]
            break
        if result is None:  # discarded or replayed by another request meanwhile
            counts["gone"] += 1
            continue
        counts[result.status] += 1
        results.append(result)
    matched = min(len(letters), MAX_BULK)
    tried = len(results) + counts["gone"]
    _log.info("deadletter.bulk_replay", matched=matched, tried=tried, stopped=stopped, **counts)
    report = {"matched": matched, "tried": tried, "more": len(letters) > MAX_BULK, "stopped": stopped}
    return json_response(200, {**report, **counts, "results": results})


_STOP_CODES: dict[type[Exception], str] = {
    StoreUnavailable: "store_unavailable",
    BufferFull: "buffer_full",
    BufferClosed: "shutting_down",
}


@_answers_unavailable
async def discard_one(request: Request) -> Response:
    letter_id = _path_int(request, "letter_id")
    try:
        letter = await discard(_state(request), letter_id, _busy(request))
    except NotReplayable as exc:
        return error(409, exc.code, exc.detail)
    if letter is None:
        return error(404, "not_found", _GONE)
    return json_response(200, {"id": letter_id, "status": "discarded"})


# ---------------------------------------------------------------- an order's history


class OrderRecord(msgspec.Struct, frozen=True):
    integration_id: int
    #: the order ids found (one, unless a number was asked for and a shop reused it)
    order_ids: list[str]
    pending: bool
    in_flight: bool
    dead_letters: list[LetterView]
    history: list[StepView]


async def order_record(state: AppState, integration_id: int, key: str) -> OrderRecord | None:
    """The history of the order with id `key` — or, failing that, of every order numbered `key`."""
    store = state.store
    steps = await store.history(integration_id, order_id=key)
    if not steps:
        steps = await store.history(integration_id, order_number=key)
    if not steps:
        return None
    order_ids = sorted({step.order_id for step in steps})
    wanted = set(order_ids)
    letters = [x for x in await store.dead_letters(integration_id) if x.order_id in wanted]
    pending = {e.order_id for e in await store.list_pending(integration_id, limit=store.pending(integration_id))}
    flying = await store.batch_in_flight(integration_id)
    in_flight = {e.order_id for e in flying.entries} if flying is not None else set()
    return OrderRecord(
        integration_id=integration_id,
        order_ids=order_ids,
        pending=bool(pending & wanted),
        in_flight=bool(in_flight & wanted),
        dead_letters=[letter_view(x) for x in letters],
        history=[step_view(step) for step in steps],
    )


async def order_history(request: Request) -> Response:
    try:
        integration_id = _path_int(request, "integration_id")
    except BadParameter as exc:
        return error(400, "invalid_parameter", str(exc))
    record = await order_record(_state(request), integration_id, request.path_params["order"])
    if record is None:
        return error(404, "not_found", "No history for this order id or number (kept `[store] history_days`).")
    return json_response(200, record)


# ---------------------------------------------------------------- the document


@functools.cache
def openapi_document() -> bytes:
    """The admin API's OpenAPI 3.1 document (schemas from the view Structs)."""
    (lane, letter, record, replayed), components = msgspec.json.schema_components(
        [LaneView, LetterView, OrderRecord, ReplayResult], ref_template="#/components/schemas/{name}"
    )
    error_schema = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    }
    components["Error"] = error_schema

    def answer(description: str, schema: object | None = None) -> dict[str, Any]:
        content = {"application/json": {"schema": schema or {"$ref": "#/components/schemas/Error"}}}
        return {"description": description, "content": content}

    integration = {"name": "integration_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    letter_id = {"name": "letter_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    refused: dict[str, Any] = {
        "401": {"description": "Missing or wrong token."},
        "503": answer("The store cannot commit now (or the buffer is full or closing); nothing changed."),
    }
    lane_ops = {
        name: {
            "post": {
                "summary": summary,
                "parameters": [integration],
                "responses": {
                    code: answer(what, lane) for code, what in (("200" if name != "flush" else "202", summary),)
                }
                | {"404": answer("No such integration or lane."), **refused}
                | ({"409": answer("The lane is paused (`lane_paused`).")} if name == "flush" else {}),
            }
        }
        for name, summary in (
            ("flush", "Flush the lane now (its backoff and debounce skipped; the rate limit kept)."),
            ("pause", "Pause the lane: it keeps accepting and holds its orders, across restarts."),
            ("resume", "Resume a paused lane."),
        )
    }
    filters = [
        {"name": "integration_id", "in": "query", "schema": {"type": "integer"}},
        {"name": "reason", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    ]
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "order-bridge admin API",
            "version": "1",
            "description": "Lanes, dead letters and replay, an order's history (docs/DESIGN.md §9). "
            "Authorization: Bearer <token> from `[admin] token`.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
        "paths": {
            "/api/lanes": {
                "get": {
                    "summary": "Every lane: counts, oldest age, why and when it flushes next, backoff, paused.",
                    "responses": {
                        "200": answer(
                            "The lanes.", {"type": "object", "properties": {"lanes": {"type": "array", "items": lane}}}
                        ),
                        "401": refused["401"],
                    },
                }
            },
            **{f"/api/lanes/{{integration_id}}/{name}": op for name, op in lane_ops.items()},
            "/api/dead-letters": {
                "get": {
                    "summary": "Dead letters, oldest first, filtered and paged "
                    "(`cursor`: the last page's next_cursor).",
                    "parameters": [
                        *filters,
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": answer(
                            "A page of dead letters.",
                            {
                                "type": "object",
                                "properties": {
                                    "dead_letters": {"type": "array", "items": letter},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                        ),
                        "400": answer("A parameter is not valid (`invalid_parameter`, named in the detail)."),
                        "401": refused["401"],
                    },
                }
            },
            "/api/dead-letters/replay": {
                "post": {
                    "summary": f"Replay every letter matching the filter in the body (at most {MAX_BULK}).",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "integration_id": {"type": "integer"},
                                        "reason": {"type": "string"},
                                        "since": {"type": "string", "format": "date-time"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "200": answer("Counts by outcome, and each replay's result.", {"type": "object"}),
                        "400": answer("The body or a filter is not valid."),
                    }
                    | refused,
                }
            },
            "/api/dead-letters/{letter_id}/replay": {
                "post": {
                    "summary": "Translate the letter's webhook again with today's config (or resend the order "
                    "Sendcloud refused) and put it in its lane; a failure keeps the letter, one attempt more.",
                    "parameters": [letter_id],
                    "responses": {
                        "200": answer("What happened to it.", replayed),
                        "404": answer("No such dead letter."),
                        "409": answer(
                            "Not replayable: `unknown_integration`, `nothing_to_replay`, or `in_progress` "
                            "(another request is replaying or discarding it)."
                        ),
                    }
                    | refused,
                }
            },
            "/api/dead-letters/{letter_id}": {
                "delete": {
                    "summary": "Discard the letter for good (logged; the ledger counts it).",
                    "parameters": [letter_id],
                    "responses": {
                        "200": answer("Discarded.", {"type": "object"}),
                        "404": answer("No such dead letter."),
                    }
                    | refused,
                }
            },
            "/api/orders/{integration_id}/{order}": {
                "get": {
                    "summary": "An order's history by its id (or, failing that, its number): every version "
                    "received, every batch, Sendcloud's answers, dead letters and replays.",
                    "parameters": [
                        integration,
                        {"name": "order", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": answer("The history.", record),
                        "404": answer("No history for it."),
                        "401": refused["401"],
                    },
                }
            },
        },
    }
    return msgspec.json.encode(document)


async def openapi(request: Request) -> Response:
    return Response(openapi_document(), media_type="application/json")


def api_routes() -> list[Route]:
    return [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/lanes", list_lanes, methods=["GET"]),
        Route("/api/lanes/{integration_id}/flush", flush_lane, methods=["POST"]),
        Route("/api/lanes/{integration_id}/pause", _pauser(True), methods=["POST"]),
        Route("/api/lanes/{integration_id}/resume", _pauser(False), methods=["POST"]),
        Route("/api/dead-letters", list_dead_letters, methods=["GET"]),
        Route("/api/dead-letters/replay", replay_many, methods=["POST"]),
        Route("/api/dead-letters/{letter_id}/replay", replay_one, methods=["POST"]),
        Route("/api/dead-letters/{letter_id}", discard_one, methods=["DELETE"]),
        Route("/api/orders/{integration_id}/{order}", order_history, methods=["GET"]),
    ]
