"""Helpers the tests share: signed deliveries and waiting for a condition.

Deliveries are signed by the platform's own adapter (`Adapter.sign`), which applies the one HMAC
recipe of the project (`adapters.base.hmac_sha256_base64`). That recipe is the platforms' own:

- Shopify (shopify-app-js `validate.ts`): base64(HMAC-SHA256(app secret, raw body)).
- WooCommerce (`WC_Webhook::generate_signature`): base64_encode(hash_hmac('sha256', $payload,
  wp_specialchars_decode($secret, ENT_QUOTES), true)): the same bytes, keyed with the secret as
  the merchant typed it (HTML entities decoded): `woocommerce_signature` models that storage.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from adapters import get_adapter
from adapters.base import hmac_sha256_base64


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll `condition` every 20 ms until it is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def signature(secret: str, body: bytes) -> str:
    """The signature header value of `body` under `secret`, as both platforms compute it."""
    return hmac_sha256_base64(secret, body)


def woocommerce_signature(stored_secret: str, body: bytes) -> str:
    """WooCommerce's signature with the secret as WordPress stores it (HTML entities encoded)."""
    return hmac_sha256_base64(html.unescape(stored_secret), body)


def signed(
    platform: str, secret: str, body: bytes, *, topic: str | None = None, delivery: str | None = None
) -> dict[str, str]:
    """The headers of one delivery of `body` on `platform`, signed with `secret` by its adapter."""
    return get_adapter(platform).sign(body, secret, topic=topic, delivery_id=delivery)


def shopify_headers(
    secret: str, body: bytes, *, topic: str = "orders/create", delivery: str | None = None
) -> dict[str, str]:
    """The headers of one Shopify delivery of `body`, signed with `secret`."""
    return signed("shopify", secret, body, topic=topic, delivery=delivery)


def woocommerce_headers(
    secret: str, body: bytes, *, topic: str = "order.created", delivery: str | None = None
) -> dict[str, str]:
    """The headers of one WooCommerce delivery of `body`, signed with `secret`."""
    return signed("woocommerce", secret, body, topic=topic, delivery=delivery)


#: the Shopify sample order (adapters/samples/shopify.json), as a dict
SHOPIFY_SAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "adapters" / "samples" / "shopify.json").read_bytes()
)


async def post_all(url: str, deliveries: list[tuple[str, bytes, dict[str, str]]], concurrency: int = 16) -> list[int]:
    """POST every (path, body, headers) with bounded concurrency; the statuses in order."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(path: str, body: bytes, headers: dict[str, str]) -> int:
            async with gate:
                return (await client.post(path, content=body, headers=headers)).status_code

        return list(await asyncio.gather(*(one(*d) for d in deliveries)))


def sent_versions(fake: Any) -> dict[tuple[int, str], list[str]]:
    """Every version of every order, in the order the fake received them (accepted requests only)."""
    seen: dict[tuple[int, str], list[str]] = defaultdict(list)
    for request in fake.requests:
        if request.status == 201:
            for order in request.body:
                key = (order["order_details"]["integration"]["id"], order["order_id"])
                seen[key].append(order["order_details"].get("order_updated_at"))
    return seen
