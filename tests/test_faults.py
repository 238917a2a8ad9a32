"""Sendcloud misbehaving in every documented (and some undocumented) way: nothing is lost.

Each test drives the running service against the fake Sendcloud with a fault injected, then
checks the conservation ledger balances and the fake holds exactly the latest version of every
order the service accepted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from service.fake_sendcloud import STILL_PROCESSING, Account, FakeSendcloud
from service.fake_sendcloud import create_app as create_fake
from tests.conftest import (
    INTEGRATIONS,
    PUBLIC_KEY,
    SECRET_KEY,
    SECRETS,
    ServiceProcess,
    free_port,
    ledger_from_metrics,
    service_toml,
)
from tests.helpers import post_all, shopify_headers, wait_for

ROOT = Path(__file__).parent.parent
SHOPIFY = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())


def deliveries(ids: range, *, integration: int = 7, **changes: Any) -> list[tuple[str, bytes, dict[str, str]]]:
    """Signed Shopify `orders/create` deliveries of distinct orders."""
    out = []
    for order_id in ids:
        body = json.dumps({**SHOPIFY, "id": order_id, **changes}).encode()
        out.append((f"/webhooks/shopify/{integration}", body, shopify_headers(SECRETS["shopify"], body)))
    return out


def fake(**options: Any) -> FakeSendcloud:
    return FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))}, **options)


def assert_all_arrived(started: Any, ids: range, integration: int = 7, timeout: float = 20.0) -> None:
    """Every order is in the fake, the buffer is empty and the ledger balances."""
    wait_for(lambda: started.state.buffer.pending() == 0, timeout=timeout)
    missing = [i for i in ids if started.fake.order(integration, str(i)) is None]
    assert not missing, f"{len(missing)} orders never arrived"
    ledger_from_metrics(started.url)


def test_one_invalid_order_in_a_hundred(stack: Any) -> None:
    """99 orders accepted within two requests; the one Sendcloud refuses is dead-lettered with its
    pointer and detail."""
    # The 100 orders must make one batch however slowly they arrive: the size trigger sends it.
    started = stack(
        fake=fake(currencies=frozenset({"EUR", "USD"})), buffer={"debounce_seconds": 5.0, "max_wait_seconds": 10.0}
    )
    batch = deliveries(range(1000, 1099)) + deliveries(range(1099, 1100), currency="GBP")
    assert set(asyncio.run(post_all(started.url, batch))) == {200}
    wait_for(lambda: started.state.buffer.pending() == 0)
    assert [(r.status, r.order_count) for r in started.fake.requests] == [(400, 100), (201, 99)]
    (letter,) = started.call(started.state.store.dead_letters())
    assert letter.order_id == "1099" and letter.reason == "sendcloud_rejected"
    assert letter.pointer is not None and letter.pointer.startswith("/data/attributes/[")
    assert letter.pointer.endswith("/currency") and "GBP" not in letter.pointer and letter.detail
    assert_all_arrived(started, range(1000, 1099))


def test_several_invalid_orders_in_one_batch(stack: Any) -> None:
    """Three refused orders in one batch: exactly those three are dead-lettered, the rest sent once."""
    started = stack(
        fake=fake(currencies=frozenset({"USD"})), buffer={"debounce_seconds": 1.0, "max_wait_seconds": 10.0}
    )
    batch = deliveries(range(2000, 2010)) + deliveries(range(2010, 2013), currency="EUR")
    assert set(asyncio.run(post_all(started.url, batch, concurrency=1))) == {200}
    wait_for(lambda: started.state.buffer.pending() == 0)
    assert sorted(d.order_id for d in started.call(started.state.store.dead_letters())) == ["2010", "2011", "2012"]
    assert [r.status for r in started.fake.requests] == [400, 201]
    assert_all_arrived(started, range(2000, 2010))


def test_still_processing_conflict_resends_the_whole_batch(stack: Any) -> None:
    """Sendcloud's "still processing" 400 (pointer /data) keeps the batch and resends it whole."""
    started = stack()
    conflict = {
        "errors": [{"status": "400", "code": "invalid", "detail": STILL_PROCESSING, "source": {"pointer": "/data"}}]
    }
    started.fake.fail_next(400, times=2, body=json.dumps(conflict).encode())
    assert set(asyncio.run(post_all(started.url, deliveries(range(3000, 3020))))) == {200}
    assert_all_arrived(started, range(3000, 3020))
    assert [r.status for r in started.fake.requests] == [400, 400, 201]
    assert started.state.store.dead_letter_count() == 0


@pytest.mark.parametrize("retry_after", [None, 0.3])
def test_429_with_and_without_retry_after(stack: Any, retry_after: float | None) -> None:
    """A 429 delays the batch (by Retry-After when given) and loses nothing."""
    started = stack()
    started.fake.fail_next(429, times=2, retry_after=retry_after)
    sent_at = time.monotonic()
    assert set(asyncio.run(post_all(started.url, deliveries(range(4000, 4030))))) == {200}
    assert_all_arrived(started, range(4000, 4030))
    statuses = [r.status for r in started.fake.requests]
    assert statuses[:2] == [429, 429] and statuses[-1] == 201
    if retry_after is not None:
        assert started.fake.requests[-1].time - started.fake.requests[0].time >= 2 * retry_after
        assert time.monotonic() - sent_at >= 2 * retry_after


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(stack: Any, status: int) -> None:
    """5xx answers (with an HTML body, as proxies send) are retried until Sendcloud accepts."""
    started = stack()
    started.fake.fail_next(status, times=3, body=b"<html>Bad Gateway</html>", content_type="text/html")
    assert set(asyncio.run(post_all(started.url, deliveries(range(5000, 5010))))) == {200}
    assert_all_arrived(started, range(5000, 5010))


def test_answers_slower_than_the_client_timeout(stack: Any) -> None:
    """A Sendcloud slower than `timeout_seconds` is a timeout, retried; the orders arrive once current."""
    started = stack(sendcloud={"timeout_seconds": 0.3})
    started.fake.delay_next(1.0, times=2)
    with capture_logs() as logs:
        assert set(asyncio.run(post_all(started.url, deliveries(range(6000, 6010))))) == {200}
        assert_all_arrived(started, range(6000, 6010))
    assert any(e["event"] == "batch.retry" and e["cause"] == "timeout" for e in logs)
    for order_id in range(6000, 6010):
        stored = started.fake.order(7, str(order_id))
        assert all(version == stored.order for version in stored.versions)  # resent, never changed


def test_connection_reset_mid_response(stack: Any) -> None:
    """Sendcloud stores the batch but the answer is cut off: the batch is resent, nothing is lost."""
    started = stack()
    started.fake.reset_next(times=2)
    with capture_logs() as logs:
        assert set(asyncio.run(post_all(started.url, deliveries(range(7000, 7015))))) == {200}
        assert_all_arrived(started, range(7000, 7015))
    assert any(e["event"] == "batch.retry" and e["cause"] == "connection_error" for e in logs)


def test_sixty_second_outage_under_steady_load(stack: Any) -> None:
    """Sendcloud answers 503 for 60 s while 20 orders/s keep arriving: every one arrives afterwards,
    the webhooks were all answered 200 within the shops' timeouts, and the ledger balances."""
    started = stack(buffer={"debounce_seconds": 0.5, "max_wait_seconds": 2.0})
    started.fake.outage(60)
    ids = range(8000, 8000 + 20 * 62)

    async def steady() -> list[int]:
        statuses: list[int] = []
        for start in range(0, len(ids), 20):
            began = time.monotonic()
            statuses += await post_all(started.url, deliveries(ids[start : start + 20]), concurrency=4)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
        return statuses

    assert set(asyncio.run(steady())) == {200}
    assert_all_arrived(started, ids, timeout=60)
    statuses = [r.status for r in started.fake.requests]
    assert 503 in statuses and statuses[-1] == 201
    assert started.fake.count_429() == 0


def test_wrong_credentials_fixed_by_a_config_reload(tmp_path: Path, serve: Any) -> None:
    """401 keeps every order; SIGHUP re-reads the config and the held orders go with the right key."""
    sendcloud = fake()
    fake_server = serve(create_fake(sendcloud))
    config = tmp_path / "config.toml"
    right = service_toml(fake_server.url + "/api/v3", logging={"level": "INFO"})
    config.write_text(right.replace(SECRET_KEY, "a-wrong-secret-key"))
    service = ServiceProcess(config, free_port())
    try:
        service.wait_ready()
        assert set(asyncio.run(post_all(service.url, deliveries(range(9000, 9025))))) == {200}
        wait_for(lambda: any(e["event"] == "sendcloud.alert" for e in service.events()))
        assert all(sendcloud.order(7, str(i)) is None for i in range(9000, 9025))
        config.write_text(right)
        service.process.send_signal(signal.SIGHUP)
        wait_for(lambda: all(sendcloud.order(7, str(i)) for i in range(9000, 9025)), timeout=30)
        assert 401 in [r.status for r in sendcloud.requests]
        ledger_from_metrics(service.url)
        events = [e["event"] for e in service.events()]
        assert "config.reloaded" in events
        assert "a-wrong-secret-key" not in b"".join(service.lines).decode()
    finally:
        service.stop(signal.SIGTERM)


def test_a_broken_config_on_reload_keeps_the_running_one(tmp_path: Path, serve: Any) -> None:
    """SIGHUP with an invalid file logs one error and changes nothing; the service keeps working."""
    sendcloud = fake()
    fake_server = serve(create_fake(sendcloud))
    config = tmp_path / "config.toml"
    config.write_text(service_toml(fake_server.url + "/api/v3", logging={"level": "INFO"}))
    service = ServiceProcess(config, free_port())
    try:
        service.wait_ready()
        config.write_text("[server\nport = oops")
        service.process.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["event"] == "config.reload_failed" for e in service.events()))
        assert set(asyncio.run(post_all(service.url, deliveries(range(9100, 9105))))) == {200}
        wait_for(lambda: all(sendcloud.order(7, str(i)) for i in range(9100, 9105)))
        assert httpx.get(service.url + "/readyz").status_code == 200
    finally:
        service.stop(signal.SIGTERM)
