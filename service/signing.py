"""Headers of a webhook delivery as the platform would send it, signed with `secret`.

Used by `order-bridge send-sample` (and the benchmarks) to play the shop's part. The signature
recipe is the platforms' own: base64(HMAC-SHA256(secret, raw body)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

__all__ = ["sign"]


def _signature(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def sign(
    platform: str, body: bytes, secret: str, *, topic: str | None = None, delivery_id: str | None = None
) -> dict[str, str]:
    """The request headers of one delivery of `body` on `platform` (shopify or woocommerce)."""
    delivery_id = delivery_id or str(uuid.uuid4())
    if platform == "shopify":
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic or "orders/create",
            "X-Shopify-Hmac-Sha256": _signature(body, secret),
            "X-Shopify-Shop-Domain": "order-bridge-sample.myshopify.com",
            "X-Shopify-API-Version": "2025-01",
            "X-Shopify-Webhook-Id": delivery_id,
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
        }
    if platform == "woocommerce":
        topic = topic or "order.created"
        resource, _, event = topic.partition(".")
        return {
            "Content-Type": "application/json",
            "User-Agent": "WooCommerce/9.8.3 Hookshot (WordPress/6.8)",
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": _signature(body, secret),
            "X-WC-Webhook-ID": "1",
            "X-WC-Webhook-Delivery-ID": delivery_id,
        }
    raise ValueError(f"no signing recipe for platform {platform!r}")
