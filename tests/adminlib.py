"""What the admin API's and the console's tests share: the orders they send and the fake
Sendcloud that refuses some of them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from service.fake_sendcloud import Account, FakeSendcloud
from tests.conftest import INTEGRATIONS, PUBLIC_KEY, SECRET_KEY, SECRETS
from tests.helpers import SHOPIFY_SAMPLE, shopify_headers

__all__ = ["SLOW", "deliver", "fake_without", "order_body"]

SAMPLE = SHOPIFY_SAMPLE
SECRET = SECRETS["shopify"]


def order_body(order_id: int, minute: int = 0, currency: str = "USD") -> bytes:
    """The sample Shopify order as order `order_id` (number #<id>), updated `minute` minutes in,
    in `currency`."""
    body = dict(SAMPLE)
    body.update(
        id=order_id,
        name=f"#{order_id}",
        order_number=order_id,
        updated_at=f"2024-06-14T10:{minute:02d}:00-04:00",
        currency=currency,
        presentment_currency=currency,
    )
    return json.dumps(body).encode()


def deliver(stack: Any, body: bytes, delivery: str | None = None) -> str:
    answer = httpx.post(
        stack.url + "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRET, body, delivery=delivery)
    )
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def fake_without(*refused: str) -> FakeSendcloud:
    """A fake Sendcloud that refuses prices in `refused` currencies (by pointer, per order)."""
    accepted = frozenset({"EUR", "GBP", "USD"} - set(refused))
    return FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))}, currencies=accepted)


SLOW = {"debounce_seconds": 30.0, "max_wait_seconds": 60.0}
