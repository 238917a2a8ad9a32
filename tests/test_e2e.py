"""End to end: signed webhooks into the running service, batches into the fake Sendcloud.

Both run as real HTTP servers on 127.0.0.1. These tests prove the product's promises: every
order arrives once and current, in batches of at most 100, never older than what was already
sent, within Sendcloud's rate limit, and traceable in the log from `order.buffered` to
`order.accepted`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import INTEGRATIONS, SECRETS, ledger_from_metrics
from tests.helpers import post_all, sent_versions, shopify_headers, wait_for, woocommerce_headers

ROOT = Path(__file__).parent.parent
SHOPIFY = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())
WOO = json.loads((ROOT / "adapters" / "samples" / "woocommerce.json").read_bytes())
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def shopify_delivery(order: dict[str, Any], topic: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(order).encode()
    return body, shopify_headers(SECRETS["shopify"], body, topic=topic)


def woo_delivery(order: dict[str, Any], topic: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(order).encode()
    return body, woocommerce_headers(SECRETS["woocommerce"], body, topic=topic)


def shopify_version(minutes: int, **changes: Any) -> dict[str, Any]:
    return {**SHOPIFY, "updated_at": (T0 + timedelta(minutes=minutes)).isoformat(), **changes}


def test_out_of_order_lifecycle_ends_with_exactly_the_latest_version(stack: Any) -> None:
    """create → update → paid → cancel delivered out of order: Sendcloud ends with the cancel, and
    no request ever carries a version older than one already sent."""
    started = stack(buffer={"debounce_seconds": 0.2, "max_wait_seconds": 1.0})
    order_id = str(SHOPIFY["id"])
    create = shopify_version(0, financial_status="pending")
    update = shopify_version(1, financial_status="pending", note="leave at the door")
    paid = shopify_version(2, financial_status="paid")
    cancel = shopify_version(3, financial_status="refunded", cancelled_at=(T0 + timedelta(minutes=3)).isoformat())
    arrivals = [(update, "orders/updated"), (create, "orders/create")]
    later = [(cancel, "orders/cancelled"), (paid, "orders/paid"), (create, "orders/create")]
    url = started.url + "/webhooks/shopify/7"
    statuses = []
    for version, topic in arrivals:
        body, headers = shopify_delivery(version, topic)
        statuses.append(httpx.post(url, content=body, headers=headers).json()["status"])
    wait_for(lambda: started.fake.order(7, order_id) is not None)  # the update went out
    for version, topic in later:
        body, headers = shopify_delivery(version, topic)
        statuses.append(httpx.post(url, content=body, headers=headers).json()["status"])
    assert statuses == ["accepted", "ignored", "accepted", "ignored", "ignored"]
    wait_for(lambda: started.fake.order(7, order_id).order["order_details"]["status"]["code"] == "cancelled")
    stored = started.fake.order(7, order_id)
    assert stored.order["payment_details"]["status"]["code"] == "refunded"
    versions = sent_versions(started.fake)[(7, order_id)]
    assert versions == sorted(versions) and len(versions) == 2
    assert started.state.buffer.pending() == 0
    ledger_from_metrics(started.url)


def test_woocommerce_updates_coalesce_to_the_latest_snapshot(stack: Any) -> None:
    """Several order.updated snapshots within the debounce become one Sendcloud version, the newest."""
    started = stack(buffer={"debounce_seconds": 1.0, "max_wait_seconds": 5.0})
    deliveries = []
    for minute, status in enumerate(["pending", "processing", "on-hold", "completed"]):
        modified = (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S")
        body, headers = woo_delivery({**WOO, "status": status, "date_modified_gmt": modified}, "order.updated")
        deliveries.append(("/webhooks/woocommerce/8", body, headers))
    assert asyncio.run(post_all(started.url, deliveries, concurrency=1)) == [200] * 4
    wait_for(lambda: started.fake.order(8, "727") is not None)
    stored = started.fake.order(8, "727")
    assert stored.order["order_details"]["status"]["code"] == "completed"
    assert len(stored.versions) == 1
    ledger_from_metrics(started.url)


def test_log_trace_joins_buffered_flush_and_accepted(stack: Any) -> None:
    """One order can be followed through the log: order.buffered → batch.flush → order.accepted."""
    started = stack()
    body, headers = shopify_delivery(SHOPIFY, "orders/create")
    with capture_logs() as logs:
        httpx.post(started.url + "/webhooks/shopify/7", content=body, headers=headers)
        wait_for(lambda: any(e["event"] == "order.accepted" for e in logs))
    order_id = str(SHOPIFY["id"])
    buffered = next(e for e in logs if e["event"] == "order.buffered")
    flush = next(e for e in logs if e["event"] == "batch.flush")
    done = next(e for e in logs if e["event"] == "order.accepted")
    assert buffered["order_id"] == done["order_id"] == order_id
    assert buffered["delivery_id"] == done["delivery_id"] == headers["X-Shopify-Webhook-Id"]
    assert order_id in flush["order_ids"] and flush["batch_id"] == done["batch_id"]
    assert done["sendcloud_id"] == started.fake.order(7, order_id).id
    assert done["latency_ms"] >= 0 and buffered["log_level"] == "info"
    ledger_from_metrics(started.url)


def test_thousand_orders_in_a_second_become_ten_requests_of_a_hundred(stack: Any) -> None:
    """1,000 distinct orders for one integration arrive in ten batches of exactly 100."""
    started = stack(buffer={"debounce_seconds": 1.0, "max_wait_seconds": 5.0})
    deliveries = []
    for n in range(1000):
        body, headers = shopify_delivery({**SHOPIFY, "id": 10_000 + n}, "orders/create")
        deliveries.append(("/webhooks/shopify/7", body, headers))
    assert set(asyncio.run(post_all(started.url, deliveries))) == {200}
    wait_for(lambda: started.state.buffer.pending() == 0, timeout=10)
    posts = [r for r in started.fake.requests]
    assert [r.order_count for r in posts] == [100] * 10
    assert {r.status for r in posts} == {201}
    ledger_from_metrics(started.url)


def test_five_thousand_orders_over_twenty_integrations_cause_no_429(stack: Any) -> None:
    """With the fake enforcing 100/min and 15/s, 5,000 orders across 20 lanes of one account get no 429."""
    started = stack(buffer={"debounce_seconds": 0.2, "max_wait_seconds": 1.0})
    lanes = [i for i in INTEGRATIONS if i >= 100]
    deliveries = []
    for n in range(5000):
        lane = lanes[n % len(lanes)]
        body, headers = shopify_delivery({**SHOPIFY, "id": 50_000 + n}, "orders/create")
        deliveries.append((f"/webhooks/shopify/{lane}", body, headers))
    assert set(asyncio.run(post_all(started.url, deliveries))) == {200}
    wait_for(lambda: started.state.buffer.pending() == 0, timeout=60)
    assert started.fake.count_429() == 0
    assert all(r.status == 201 for r in started.fake.requests)
    assert sum(r.order_count for r in started.fake.requests) == 5000
    assert max(r.order_count for r in started.fake.requests) <= 100
    for n in range(5000):
        assert started.fake.order(lanes[n % len(lanes)], str(50_000 + n)) is not None


@pytest.mark.parametrize("status", [429, 503])
def test_transient_sendcloud_errors_lose_nothing(stack: Any, status: int) -> None:
    """A 429 or 503 from Sendcloud delays the batch; every order still arrives once, current."""
    started = stack()
    started.fake.fail_next(status, times=2, retry_after=0.1)
    deliveries = []
    for n in range(30):
        body, headers = shopify_delivery({**SHOPIFY, "id": 90_000 + n}, "orders/create")
        deliveries.append(("/webhooks/shopify/7", body, headers))
    assert set(asyncio.run(post_all(started.url, deliveries))) == {200}
    wait_for(lambda: started.state.buffer.pending() == 0, timeout=15)
    assert all(started.fake.order(7, str(90_000 + n)) for n in range(30))
    assert [r.status for r in started.fake.requests][:2] == [status, status]
    ledger_from_metrics(started.url)


def test_orders_sendcloud_refuses_are_dead_lettered_and_the_rest_arrive(stack: Any) -> None:
    """A batch with orders Sendcloud refuses by pointer: exactly those are dead-lettered, with the
    pointer; the others are resent at once and arrive."""
    from service.fake_sendcloud import Account, FakeSendcloud
    from tests.conftest import PUBLIC_KEY, SECRET_KEY

    fake = FakeSendcloud(
        accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))}, currencies=frozenset({"EUR"})
    )
    started = stack(fake=fake, buffer={"debounce_seconds": 1.0, "max_wait_seconds": 10.0})
    deliveries = []
    for n, currency in enumerate(["EUR", "USD", "EUR", "USD", "EUR"]):
        body, headers = shopify_delivery({**SHOPIFY, "id": 30_000 + n, "currency": currency}, "orders/create")
        deliveries.append(("/webhooks/shopify/7", body, headers))
    assert asyncio.run(post_all(started.url, deliveries, concurrency=1)) == [200] * 5
    wait_for(lambda: started.state.buffer.pending() == 0)
    assert [r.status for r in fake.requests] == [400, 201]
    assert [r.order_count for r in fake.requests] == [5, 3]
    letters = started.call(started.state.store.dead_letters())
    assert sorted(d.order_id for d in letters) == ["30001", "30003"]
    assert {d.pointer for d in letters} == {
        "/data/attributes/[1]/payment_details/total_price/currency",
        "/data/attributes/[3]/payment_details/total_price/currency",
    }
    assert all(fake.order(7, str(30_000 + n)) for n in (0, 2, 4))
    ledger_from_metrics(started.url)


def test_wrong_credentials_keep_the_orders_until_they_work(stack: Any) -> None:
    """401 from Sendcloud drops nothing: once the account is fixed the buffered orders arrive."""
    from service.fake_sendcloud import Account, FakeSendcloud
    from tests.conftest import PUBLIC_KEY, SECRET_KEY

    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account("another-secret", frozenset(INTEGRATIONS))})
    started = stack(fake=fake)
    body, headers = shopify_delivery(SHOPIFY, "orders/create")
    with capture_logs() as logs:
        assert httpx.post(started.url + "/webhooks/shopify/7", content=body, headers=headers).status_code == 200
        wait_for(lambda: any(e["event"] == "sendcloud.alert" for e in logs))
    assert started.state.buffer.pending() == 1
    fake.accounts = {PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))}
    wait_for(lambda: fake.order(7, str(SHOPIFY["id"])) is not None, timeout=20)
    assert 401 in [r.status for r in fake.requests]
    ledger_from_metrics(started.url)
