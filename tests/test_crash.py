"""SIGKILL under load, on real processes: what `memory://` loses, and that the SQLite store loses nothing.

With `[store] url = "memory://"` a hard kill loses what was accepted but not yet sent: the first
test measures that window — how many orders, how old — and pins the promise in
docs/guarantees.md for that mode. The second kills a service on the SQLite store a dozen times
at random moments and proves every `accepted` order arrives, at its newest version. Run them with
`-s` to see the figures: `pytest tests/test_crash.py -s`.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.fake_sendcloud import FakeSendcloud
from tests.conftest import (
    SECRETS,
    ServiceProcess,
    fake_sendcloud_and_config,
    free_port,
    ledger_from_metrics,
)
from tests.helpers import SHOPIFY_SAMPLE, sent_versions, shopify_headers, wait_for

ROOT = Path(__file__).parent.parent
SHOPIFY = SHOPIFY_SAMPLE
RATE = 20  # orders per second: under 100 per max_wait window, so max_wait (not size) drives the flushes
DEBOUNCE, MAX_WAIT = 1.0, 3.0
BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)


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
    fake, config = fake_sendcloud_and_config(
        serve, tmp_path, buffer={"debounce_seconds": DEBOUNCE, "max_wait_seconds": MAX_WAIT}
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


# ---------------------------------------------------------------- the SQLite store: nothing lost


def history(fake: FakeSendcloud, order_id: str) -> list[tuple[float, int | None, str]]:
    """Every request that carried the order: when it arrived, its answer, the version."""
    return [
        (round(request.time, 3), request.status, order["order_details"].get("order_updated_at"))
        for request in fake.requests
        if isinstance(request.body, list)
        for order in request.body
        if order.get("order_id") == order_id
    ]


async def _versions_until_killed(
    url: str,
    rng: random.Random,
    accepted: dict[str, int],
    unanswered: dict[str, set[int]],
    answers: dict[str, int],
    until: float,
) -> None:
    """Updates of 30 orders, each version a minute of `updated_at`, sent out of order, until the
    process dies (the connection fails), or at the monotonic time `until`. `accepted` keeps each
    order's newest version answered `accepted`; `unanswered` the versions whose request the kill
    cut off (the service may have committed one before it died: it may arrive, it need not);
    `answers` counts the answers."""
    import httpx

    newest: dict[int, int] = {}  # per order, the newest minute sent so far
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < until:
            order_id = 300_000 + rng.randrange(30)
            # mostly newer than the last version sent of this order, sometimes older (out of order)
            minute = max(0, newest.get(order_id, 0) + rng.randint(-2, 3))
            newest[order_id] = max(minute, newest.get(order_id, 0))
            stamp = (BASE_TIME + timedelta(minutes=minute)).isoformat()
            body = json.dumps({**SHOPIFY, "id": order_id, "updated_at": stamp}).encode()
            try:
                answer = await client.post(
                    "/webhooks/shopify/7",
                    content=body,
                    headers=shopify_headers(SECRETS["shopify"], body, topic="orders/updated"),
                )
            except httpx.HTTPError:
                answers["no answer"] = answers.get("no answer", 0) + 1
                unanswered.setdefault(str(order_id), set()).add(minute)
                return
            outcome = answer.json().get("status", answer.json().get("error", "?")) + ":" + str(answer.status_code)
            answers[outcome] = answers.get(outcome, 0) + 1
            if answer.json() == {"status": "accepted"}:
                accepted[str(order_id)] = max(accepted.get(str(order_id), -1), minute)
            await asyncio.sleep(0.01)


def test_sigkill_at_random_moments_loses_nothing_with_the_sqlite_store(tmp_path: Path, serve: Any) -> None:
    """Twelve `kill -9`s at random moments (before, during and after flushes, some with a slow
    Sendcloud so batches are in flight), each followed by a restart on the same file; then a drain.
    Every order ever answered `accepted` reaches Sendcloud at its newest accepted version, no request
    carries an older version of an order than one already sent (a version whose request the kill cut
    off may be the one that arrives, if it was newer and committed), and the ledger — kept in the file
    across all the restarts — balances with nothing pending."""
    fake, config = fake_sendcloud_and_config(
        serve,
        tmp_path,
        buffer={"debounce_seconds": 0.2, "max_wait_seconds": 0.5},
        store={"url": f"sqlite:///{tmp_path / 'state.db'}", "synchronous": "normal"},
        # a restarted lane that had a batch in flight waits this long (the dead process's request)
        sendcloud={"timeout_seconds": 2.0},
    )
    rng = random.Random(20261203)
    accepted: dict[str, int] = {}
    unanswered: dict[str, set[int]] = {}
    answers: dict[str, int] = {}
    port = free_port()
    kills = 12
    for kill in range(kills):
        service = ServiceProcess(config, port, cwd=tmp_path)
        service.wait_ready()
        if kill % 3 == 1:
            fake.delay_next(0.4, times=3)  # batches stay in flight for a while
        # The kill comes from another thread, mid-request: the load goes on until the connection dies.
        killer = threading.Timer(rng.uniform(0.3, 2.0), service.process.kill)
        killer.start()
        cap = time.monotonic() + 10
        asyncio.run(_versions_until_killed(service.url, rng, accepted, unanswered, answers, cap))
        killer.join()
        service.stop(signal.SIGKILL)

    final = ServiceProcess(config, port, cwd=tmp_path)
    try:
        final.wait_ready()

        def newest_sent(order_id: str) -> str | None:
            stored = fake.order(7, order_id)
            return None if stored is None else stored.order["order_details"]["order_updated_at"]

        def delivered() -> bool:
            return all(newest_sent(order_id) is not None for order_id in accepted)

        wait_for(delivered, timeout=30)
        wait_for(lambda: ledger_from_metrics(final.url, restarted=True).get("pending", 1) == 0, timeout=30)
        ledger = ledger_from_metrics(final.url, restarted=True)
    finally:
        final.stop(signal.SIGTERM)

    def final_minute(order_id: str) -> int | None:
        stored = newest_sent(order_id)
        return None if stored is None else int((datetime.fromisoformat(stored) - BASE_TIME) / timedelta(minutes=1))

    # An order is lost unless Sendcloud holds its newest accepted version — or a newer one whose
    # request was cut off by a kill after the service had committed it (never an older one).
    lost = [
        order_id
        for order_id, minute in accepted.items()
        if final_minute(order_id) != minute
        and not (final_minute(order_id) in unanswered.get(order_id, set()) and (final_minute(order_id) or -1) > minute)
    ]
    sent = sent_versions(fake)
    older = {key: versions for key, versions in sent.items() if versions != sorted(versions)}
    resent = sum(len(versions) - len(set(versions)) for versions in sent.values())
    print(
        f"\n{kills} kills: answers {dict(sorted(answers.items()))}; {len(accepted)} orders accepted, "
        f"{len(lost)} lost, {resent} versions resent, ledger {ledger}"
    )
    assert sum(answers.values()) > 200 and len(accepted) == 30
    assert lost == [], [(order_id, accepted[order_id], history(fake, order_id)) for order_id in lost]
    assert older == {}, older
    assert ledger["accepted"] == ledger["sent"] + ledger["superseded"] + ledger["dead_lettered"] + ledger["pending"]
    assert ledger["pending"] == 0 and ledger["accepted"] >= answers.get("accepted:200", 0)
