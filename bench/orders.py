"""Distinct, correctly signed Shopify `orders/create` deliveries for the HTTP benchmarks.

Every request of the ingest, latency, end-to-end, batching and memory scenarios carries a
different order (its own `id`, `name` and `X-Shopify-Webhook-Id`), signed like Shopify signs it:
base64(HMAC-SHA256(secret, raw body)). Sending one body again and again would measure the
service's `duplicate` path (delivery-id dedupe) or coalescing, not taking new orders.

The body is `bench/shopify_order.json` (7.8 KB, the README's sample) with its top-level `id`
and `name` moved to the end, so that a body is a constant `prefix` followed by a short varying
`tail(order_id)`. JSON key order carries no meaning, and the service decodes the same fields.
That lets a signer hash the prefix once and only the tail per request (HMAC midstate: a copy of
`hmac.new(secret, prefix)` in Python, the same trick in Lua for wrk, see `sha256.lua`).

Order ids are 13 digits (like Shopify's), fixed width so every body has the same length.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from adapters.base import hmac_sha256_base64

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "shopify_order.json"
SECRET = "bench-secret"
ID_DIGITS = 13

#: headers every delivery carries besides Host, Content-Length, the delivery id and the signature
STATIC_HEADERS = (
    ("Content-Type", "application/json"),
    ("X-Shopify-Topic", "orders/create"),
    ("X-Shopify-Shop-Domain", "trailhead-goods.myshopify.com"),
    ("X-Shopify-API-Version", "2024-04"),
)


def body_prefix(sample: Path = SAMPLE) -> bytes:
    """The sample order as compact JSON without `id` and `name`, and without its closing brace."""
    order = json.loads(sample.read_bytes())
    order.pop("id", None)
    order.pop("name", None)
    text = json.dumps(order, separators=(",", ":"), ensure_ascii=False)
    assert text.endswith("}")
    return text[:-1].encode()


def tail(order_id: str) -> bytes:
    """The varying end of a body: the order's `name` (#<id>) and `id`, and the closing brace."""
    if len(order_id) != ID_DIGITS or not order_id.isdigit():
        raise ValueError(f"order id must be {ID_DIGITS} digits")
    return b',"name":"#' + order_id.encode() + b'","id":' + order_id.encode() + b"}"


def order_id(lead: int, tag: int, number: int) -> str:
    """A 13-digit id: `lead` (1-9, who generates), `tag` (0-99, which load), `number` (< 10**10)."""
    if not (1 <= lead <= 9 and 0 <= tag <= 99 and 0 <= number < 10**10):
        raise ValueError("order id parts out of range")
    return f"{lead}{tag:02d}{number:010d}"


class Signer:
    """Signs prefix + tail with the prefix hashed once (a copy of the keyed HMAC per request)."""

    def __init__(self, prefix: bytes, secret: str = SECRET) -> None:
        self._base = hmac.new(secret.encode(), prefix, hashlib.sha256)

    def sign(self, body_tail: bytes) -> str:
        mac = self._base.copy()
        mac.update(body_tail)
        return base64.b64encode(mac.digest()).decode("ascii")


def reference_signature(body: bytes, secret: str = SECRET) -> str:
    """The plain recipe, for self-checks: the service's own `hmac_sha256_base64` (Signer's midstate
    trick must give the same)."""
    return hmac_sha256_base64(secret, body)
