"""The service's own OpenAPI 3.1 document (DESIGN §3), served at `GET /openapi.json`.

It describes the routes exactly as `service.app` answers them, refusals included: every status,
every error code, every content type. `tests/test_hostile.py` runs schemathesis against the
running service with this very document, so the code and the document cannot drift apart
unnoticed. `document()` builds it, `document_json()` is the encoded form the route returns.

Everything platform-specific comes from the registry, `adapters.ADAPTERS`: the platform enum, the
headers each adapter reads (`Adapter.headers`) and the pings they answer (`Adapter.ping`). Both
functions cache per registry, so a platform registered later (the tests' made-up one) appears.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import msgspec

from adapters import ADAPTERS, DEFAULT_CURRENCIES, Adapter, AdapterFactory

__all__ = ["ERROR_CODES", "IGNORED_REASONS", "document", "document_json"]

JSONObject = dict[str, Any]

#: `error` codes of the webhook route, by status (DESIGN §3).
ERROR_CODES: Final[dict[int, tuple[str, ...]]] = {
    400: ("malformed_body", "missing_topic", "client_disconnected"),
    401: ("invalid_signature",),
    404: ("unknown_integration", "not_found"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    503: ("shutting_down", "buffer_full", "store_unavailable", "internal_error"),
}

#: `reason` of a 200 `ignored` answer.
IGNORED_REASONS: Final[tuple[str, ...]] = ("topic", "no_shippable_items", "stale", "ping")

_ERROR_MEANINGS: Final[dict[int, str]] = {
    400: "A signed body that is not the platform's order shape (`malformed_body`, detail names the field), a "
    "signed delivery without its topic header (`missing_topic`), or a body that did not arrive whole.",
    401: "The signature header is missing or does not match the raw body under any of the integration's secrets.",
    404: "No such integration, or the integration is not for this platform (`unknown_integration`); a path "
    "that does not match the route at all, such as an empty segment (`not_found`).",
    413: "The body is over `max_body_bytes` (refused from Content-Length, or as soon as the stream passes it).",
    415: "The body is not JSON by its Content-Type (or, without one, by its first byte), and is not the "
    "platform's ping.",
    503: "The buffer is full, the service is shutting down, or an unexpected internal failure: retry after "
    "`Retry-After` seconds; nothing is lost.",
}

_DESCRIPTION = """\
order-bridge receives order webhooks from shop platforms, verifies their HMAC signature on the raw
body, drops repeated deliveries, translates each order to Sendcloud's v3 order schema and upserts
orders to Sendcloud in batches (the contract is docs/DESIGN.md).

A 200 `accepted` means the order is buffered; it reaches Sendcloud after the debounce. Every answer
of the webhook route is JSON; errors are `{"error": <machine code>, "detail": <sentence>}`. Nothing
a client sends causes a 500: an unexpected failure is a 503 with `Retry-After`, which shops retry.

Only when the config sets `base_url = "sandbox"`, the built-in Sendcloud simulator is also mounted
at `/sandbox` (`POST` and `GET /sandbox/api/v3/orders`, `GET /sandbox/api/v3/orders/{id}`, HTTP
Basic `sandbox`/`sandbox`). It is a development aid, not part of this API, and is not described here.
"""


def _error_schema(codes: tuple[str, ...]) -> JSONObject:
    return {
        "type": "object",
        "required": ["error", "detail"],
        "additionalProperties": False,
        "properties": {
            "error": {"type": "string", "enum": list(codes)},
            "detail": {"type": "string", "minLength": 1},
        },
    }


def _json_content(schema: JSONObject) -> JSONObject:
    return {"application/json": {"schema": schema}}


def _error_response(status: int) -> JSONObject:
    response: JSONObject = {
        "description": _ERROR_MEANINGS[status],
        "content": _json_content({"$ref": f"#/components/schemas/Error{status}"}),
    }
    if status == 503:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _header_parameters(adapters: list[Adapter]) -> list[JSONObject]:
    """Every header any adapter reads, once (by name, case-insensitively: a header is one
    parameter however many platforms read it). All optional: the service answers their
    absence itself (401 or 400, never 5xx)."""
    parameters: dict[str, JSONObject] = {}
    for adapter in adapters:
        for name, description in adapter.headers.items():
            parameters.setdefault(
                name.lower(),
                {
                    "name": name,
                    "in": "header",
                    "required": False,
                    "description": description,
                    "schema": {"type": "string"},
                },
            )
    return list(parameters.values())


def _pings(adapters: list[Adapter]) -> str:
    pings = [adapter.ping for adapter in adapters if adapter.ping]
    return " ".join(pings) if pings else "No platform sends one."


def _webhook(adapters: list[Adapter]) -> JSONObject:
    return {
        "post": {
            "operationId": "receiveWebhook",
            "summary": "Receive one order webhook from a shop",
            "description": (
                "Guard (size, integration), verify the signature on the raw body (constant time), dedupe by "
                "delivery id, filter the topic, translate, buffer, answer (DESIGN §1). A platform's unsigned ping is "
                f"answered 200 `ignored` before any signature check. {_pings(adapters)}"
            ),
            "parameters": [
                {
                    "name": "platform",
                    "in": "path",
                    "required": True,
                    "description": "The shop platform; must be the integration's. Any other value: 404.",
                    "schema": {"type": "string", "enum": [adapter.platform for adapter in adapters]},
                },
                {
                    "name": "integration_id",
                    "in": "path",
                    "required": True,
                    "description": "The Sendcloud integration id as configured. Unknown or not digits: 404.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
                *_header_parameters(adapters),
            ],
            "requestBody": {
                "required": True,
                "description": "The platform's order webhook body, verbatim (the signature covers these bytes).",
                "content": {
                    "application/json": {"schema": {"description": "Any JSON; the adapter decides its shape."}},
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "description": "Only a platform's ping is accepted; any other form: 415. "
                            + _pings(adapters),
                            "type": "object",
                        }
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "Taken: accepted (buffered), duplicate (delivery id seen), ignored (with a "
                    "reason), or dead_lettered (can never become a valid Sendcloud order; do not retry).",
                    "content": _json_content({"$ref": "#/components/schemas/WebhookAnswer"}),
                },
                **{str(status): _error_response(status) for status in sorted(ERROR_CODES)},
            },
        }
    }


def _get(operation_id: str, summary: str, responses: JSONObject) -> JSONObject:
    return {"get": {"operationId": operation_id, "summary": summary, "responses": responses}}


def _build(adapters: list[Adapter]) -> JSONObject:
    return {
        "openapi": "3.1.0",
        "info": {"title": "order-bridge", "version": "0.1.0", "description": _DESCRIPTION},
        "paths": {
            "/webhooks/{platform}/{integration_id}": _webhook(adapters),
            "/healthz": _get(
                "health",
                "Liveness: 200 while the process and its event loop are alive",
                {
                    "200": {
                        "description": "Alive.",
                        "content": _json_content(
                            {
                                "type": "object",
                                "required": ["status"],
                                "additionalProperties": False,
                                "properties": {"status": {"const": "ok"}},
                            }
                        ),
                    }
                },
            ),
            "/readyz": _get(
                "readiness",
                "Readiness: started, flushing, and the buffer below its high-water mark",
                {
                    "200": {"description": "Ready.", "content": _json_content({"$ref": "#/components/schemas/Ready"})},
                    "503": {
                        "description": "Not ready (also from the moment shutdown begins), with the reasons.",
                        "content": _json_content({"$ref": "#/components/schemas/NotReady"}),
                    },
                },
            ),
            "/metrics": _get(
                "metrics",
                "Prometheus text exposition (metric names in DESIGN §7)",
                {"200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            ),
            "/openapi.json": _get(
                "openapi",
                "This document",
                {
                    "200": {
                        "description": "The OpenAPI 3.1 document of this service.",
                        "content": _json_content({"type": "object", "required": ["openapi", "info", "paths"]}),
                    }
                },
            ),
        },
        "components": {
            "schemas": {
                "WebhookAnswer": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["status"],
                            "additionalProperties": False,
                            "properties": {"status": {"enum": ["accepted", "duplicate", "dead_lettered"]}},
                        },
                        {
                            "type": "object",
                            "required": ["status", "reason"],
                            "additionalProperties": False,
                            "properties": {"status": {"const": "ignored"}, "reason": {"enum": list(IGNORED_REASONS)}},
                        },
                    ]
                },
                **{f"Error{status}": _error_schema(codes) for status, codes in ERROR_CODES.items()},
                "Ready": {
                    "type": "object",
                    "required": ["status", "pending"],
                    "additionalProperties": False,
                    "properties": {"status": {"const": "ready"}, "pending": {"type": "integer", "minimum": 0}},
                },
                "NotReady": {
                    "type": "object",
                    "required": ["status", "reasons"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"const": "not_ready"},
                        "reasons": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "enum": [
                                    "shutting_down",
                                    "not_started",
                                    "flusher_stopped",
                                    "buffer_near_full",
                                    "store_unavailable",
                                ]
                            },
                        },
                    },
                },
            },
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
        },
    }


def document() -> JSONObject:
    """The document for the platforms registered now (a fresh copy: callers may change it)."""
    return msgspec.json.decode(document_json(), type=JSONObject)


def document_json() -> bytes:
    """`document()` encoded, what `GET /openapi.json` returns; built once per registry."""
    return _encoded(tuple(sorted(ADAPTERS.items())))


@functools.cache
def _encoded(registry: tuple[tuple[str, AdapterFactory], ...]) -> bytes:
    adapters = [factory(DEFAULT_CURRENCIES) for _, factory in registry]
    return msgspec.json.encode(_build(adapters))
