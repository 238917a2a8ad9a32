"""The service's own OpenAPI 3.1 document (DESIGN §3), served at `GET /openapi.json`.

It describes the routes exactly as `service.app` answers them, refusals included: every status,
every error code, every content type. `tests/test_hostile.py` runs schemathesis against the
running service with this very document, so the code and the document cannot drift apart
unnoticed. Built once at import; `DOCUMENT_JSON` is the encoded form the route returns.

The webhook's platform enum comes from `adapters.ADAPTERS`; the headers each platform's adapter
reads are listed in `PLATFORM_HEADERS` (a test checks that every platform has its entry).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from adapters import ADAPTERS

__all__ = ["DOCUMENT", "DOCUMENT_JSON", "ERROR_CODES", "IGNORED_REASONS", "PLATFORM_HEADERS"]

JSONObject = dict[str, Any]

#: Per platform, the request headers its adapter reads: (name, what it is). All are optional in
#: the document because the service answers their absence itself (401 or 400, never 5xx).
PLATFORM_HEADERS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "shopify": (
        ("X-Shopify-Hmac-Sha256", "Shopify: base64(HMAC-SHA256(secret, raw body)). Missing or wrong: 401."),
        ("Shopify-Hmac-Sha256", "Shopify, unprefixed spelling of `X-Shopify-Hmac-Sha256` (read when that is absent)."),
        ("X-Shopify-Topic", "Shopify: the topic, e.g. `orders/create`. Missing on a signed delivery: 400."),
        ("Shopify-Topic", "Shopify, unprefixed spelling of `X-Shopify-Topic`."),
        ("X-Shopify-Webhook-Id", "Shopify: the delivery id, the same on retries; a repeat is answered `duplicate`."),
        ("Shopify-Webhook-Id", "Shopify, unprefixed spelling of `X-Shopify-Webhook-Id`."),
        ("X-Shopify-Event-Id", "Shopify: the delivery id used when no webhook id header is sent."),
        ("Shopify-Event-Id", "Shopify, unprefixed spelling of `X-Shopify-Event-Id`."),
    ),
    "woocommerce": (
        ("X-WC-Webhook-Signature", "WooCommerce: base64(HMAC-SHA256(secret, raw body)). Missing or wrong: 401."),
        ("X-WC-Webhook-Topic", "WooCommerce: the topic, e.g. `order.updated`. Missing on a signed delivery: 400."),
        ("X-WC-Webhook-Delivery-ID", "WooCommerce: the delivery id; a repeat is answered `duplicate`."),
    ),
}

#: `error` codes of the webhook route, by status (DESIGN §3).
ERROR_CODES: Final[dict[int, tuple[str, ...]]] = {
    400: ("malformed_body", "missing_topic", "client_disconnected"),
    401: ("invalid_signature",),
    404: ("unknown_integration", "not_found"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    503: ("shutting_down", "buffer_full", "internal_error"),
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
    "WooCommerce creation ping.",
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


def _header_parameters() -> list[JSONObject]:
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }
        for platform in sorted(PLATFORM_HEADERS)
        for name, description in PLATFORM_HEADERS[platform]
    ]


def _webhook() -> JSONObject:
    return {
        "post": {
            "operationId": "receiveWebhook",
            "summary": "Receive one order webhook from a shop",
            "description": (
                "Guard (size, integration), verify the signature on the raw body (constant time), dedupe by "
                "delivery id, filter the topic, translate, buffer, answer (DESIGN §1). The WooCommerce creation "
                "ping (`webhook_id=N`, form-encoded, unsigned) is answered 200 `ignored` before any signature check."
            ),
            "parameters": [
                {
                    "name": "platform",
                    "in": "path",
                    "required": True,
                    "description": "The shop platform; must be the integration's. Any other value: 404.",
                    "schema": {"type": "string", "enum": sorted(ADAPTERS)},
                },
                {
                    "name": "integration_id",
                    "in": "path",
                    "required": True,
                    "description": "The Sendcloud integration id as configured. Unknown or not digits: 404.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
                *_header_parameters(),
            ],
            "requestBody": {
                "required": True,
                "description": "The platform's order webhook body, verbatim (the signature covers these bytes).",
                "content": {
                    "application/json": {"schema": {"description": "Any JSON; the adapter decides its shape."}},
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "description": "Only the WooCommerce creation ping is accepted; any other form: 415.",
                            "type": "object",
                            "properties": {"webhook_id": {"type": "string", "pattern": "^[0-9]+$"}},
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


def _build() -> JSONObject:
    return {
        "openapi": "3.1.0",
        "info": {"title": "order-bridge", "version": "0.1.0", "description": _DESCRIPTION},
        "paths": {
            "/webhooks/{platform}/{integration_id}": _webhook(),
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
                            "items": {"enum": ["shutting_down", "not_started", "flusher_stopped", "buffer_near_full"]},
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


#: The document, built once. Treat it as read-only.
DOCUMENT: Final[JSONObject] = _build()
#: `DOCUMENT` encoded as JSON, what `GET /openapi.json` returns.
DOCUMENT_JSON: Final[bytes] = msgspec.json.encode(DOCUMENT)
