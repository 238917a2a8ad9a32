"""SIGKILL under steady load: what the in-memory buffer loses, and that a restart comes back healthy.

The buffer is in memory, so a hard kill loses what was accepted but not yet sent. This test
measures that window — how many orders, how old — and pins the promise in docs/guarantees.md:
under normal operation nothing older than `max_wait_seconds` (plus one Sendcloud round trip) is
lost. Run it alone with `-s` to see the figures: `pytest tests/test_crash.py -s`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

from service.fake_sendcloud import Account, FakeSendcloud
from service.fake_sendcloud import create_app as create_fake
from tests.conftest import INTEGRATIONS, PUBLIC_KEY, SECRET_KEY, SECRETS, ServiceProcess, free_port, service_toml
from tests.helpers import shopify_headers, wait_for

ROOT = Path(__file__).parent.parent
SHOPIFY = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())
RATE = 20  # orders per second: under 100 per max_wait window, so max_wait (not size) drives the flushes
DEBOUNCE, MAX_WAIT = 1.0, 3.0


async def steady_load(url: str, seconds: float, accepted: dict[str, float]) -> None:
    """`RATE` distinct orders a second for `seconds`; records when each was answered 200."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        n = 0
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            order_id = 200_000 + n
            n += 1
            body = json.dumps({**SHOPIFY, "id": order_id}).encode()
            answer = await client.post(
                "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRETS["shopify"], body)
            )
            if answer.status_code == 200:
                accepted[str(order_id)] = time.monotonic()
            await asyncio.sleep(max(0.0, began + n / RATE - time.monotonic()))


def test_sigkill_loses_at_most_the_last_max_wait_seconds_and_restart_is_healthy(tmp_path: Path, serve: Any) -> None:
    """Kill -9 after 8.5 s of steady load, late in a max_wait window (flushes at ~3, 6, 9 s): the
    orders of that window are lost, nothing older than max_wait + one round trip; the restarted
    process is ready and takes orders."""
    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))})
    fake_server = serve(create_fake(fake))
    config = tmp_path / "config.toml"
    config.write_text(
        service_toml(
            fake_server.url + "/api/v3",
            buffer={"debounce_seconds": DEBOUNCE, "max_wait_seconds": MAX_WAIT},
            logging={"level": "WARNING"},
        )
    )
    port = free_port()
    service = ServiceProcess(config, port)
    service.wait_ready()
    accepted: dict[str, float] = {}
    asyncio.run(steady_load(service.url, 8.5, accepted))
    killed_at = time.monotonic()
    service.stop(signal.SIGKILL)
    lost_ages = sorted(killed_at - at for order_id, at in accepted.items() if fake.order(7, order_id) is None)
    oldest_lost = lost_ages[-1] if lost_ages else 0.0
    print(
        f"\nSIGKILL loss window: {len(accepted)} orders accepted at {RATE}/s, {len(lost_ages)} lost "
        f"({len(lost_ages) / len(accepted):.0%}); oldest lost {oldest_lost:.2f} s "
        f"(debounce {DEBOUNCE} s, max_wait {MAX_WAIT} s)"
    )
    assert len(accepted) >= RATE * 8
    assert lost_ages, "the kill fell between windows: nothing to measure"
    assert oldest_lost <= MAX_WAIT + 1.0, lost_ages
    assert len(lost_ages) <= RATE * (MAX_WAIT + 1.0)

    restarted = ServiceProcess(config, port)
    try:
        restarted.wait_ready()
        body = json.dumps({**SHOPIFY, "id": 299_999}).encode()
        import httpx

        answer = httpx.post(
            restarted.url + "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRETS["shopify"], body)
        )
        assert answer.json() == {"status": "accepted"}
        wait_for(lambda: fake.order(7, "299999") is not None)
    finally:
        restarted.stop(signal.SIGTERM)
