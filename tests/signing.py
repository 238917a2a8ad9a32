"""Sign bodies exactly the way the platforms do, for tests (and nothing else).

Shopify (shopify-app-js `validate.ts`): base64(HMAC-SHA256(app secret, raw body)).
WooCommerce (`WC_Webhook::generate_signature`): base64_encode(hash_hmac('sha256', $payload,
wp_specialchars_decode($secret, ENT_QUOTES), true)): the same bytes, keyed with the secret
as the merchant typed it (HTML entities decoded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import uuid


def shopify_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def woocommerce_signature(stored_secret: str, body: bytes) -> str:
    key = html.unescape(stored_secret).encode("utf-8")
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def shopify_headers(
    secret: str, body: bytes, *, topic: str = "orders/create", delivery: str | None = None
) -> dict[str, str]:
    """The headers of one Shopify delivery of `body`, signed with `secret`."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_signature(secret, body),
        "X-Shopify-Shop-Domain": "test.myshopify.com",
        "X-Shopify-Webhook-Id": delivery or str(uuid.uuid4()),
    }


def woocommerce_headers(
    secret: str, body: bytes, *, topic: str = "order.created", delivery: str | None = None
) -> dict[str, str]:
    """The headers of one WooCommerce delivery of `body`, signed with `secret`."""
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": woocommerce_signature(secret, body),
        "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
    }
