"""The SQLite store's faults, on real `order-bridge serve` processes: a disk that fills up under
load, a corrupt file at start, and what survives `kill -9` besides orders (delivery ids).

The full disk is the kernel's own: `RLIMIT_FSIZE` lowered to 0 on the running service from
outside (`prlimit`), so every write to a regular file fails with EFBIG (CPython ignores SIGXFSZ)
exactly as on a full volume, and raised again to "free" the disk. Pipes (the logs) are not files
and keep working.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SECRETS, ServiceProcess, fake_sendcloud_and_config, free_port, ledger_from_metrics
from tests.helpers import SHOPIFY_SAMPLE, shopify_headers, wait_for


def _post(client: httpx.Client, order_id: int, delivery: str | None = None) -> httpx.Response:
    body = json.dumps({**SHOPIFY_SAMPLE, "id": order_id}).encode()
    return client.post(
        "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRETS["shopify"], body, delivery=delivery)
    )


def _set_file_size_limit(pid: int, soft: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def test_a_full_disk_mid_load_answers_503_never_a_false_accepted_and_recovers(tmp_path: Path, serve: Any) -> None:
    """Distinct orders at a steady pace; the disk fills up, then has room again. While it is full
    every webhook is answered 503 `store_unavailable` with Retry-After and `/readyz` says why; once
    it has room the service takes orders again. In the end — after a `kill -9` and a restart, so
    only what was on disk counts — every order answered `accepted` is in Sendcloud, and none that
    was answered 503."""
    fake, config = fake_sendcloud_and_config(
        serve,
        tmp_path,
        buffer={"debounce_seconds": 0.1, "max_wait_seconds": 0.3},
        store={"url": f"sqlite:///{tmp_path / 'state.db'}"},
        sendcloud={"timeout_seconds": 2.0},
    )
    port = free_port()
    service = ServiceProcess(config, port, cwd=tmp_path)
    try:
        _load_through_a_full_disk(service, fake, config, tmp_path, port)
    finally:
        if service.process.poll() is None:
            service.stop(signal.SIGKILL)


def _load_through_a_full_disk(service: ServiceProcess, fake: Any, config: Path, tmp_path: Path, port: int) -> None:
    service.wait_ready()
    accepted: set[str] = set()
    refused: set[str] = set()
    ready_while_full: list[httpx.Response] = []
    next_id = iter(range(400_000, 401_000))
    with httpx.Client(base_url=service.url, timeout=5) as client:

        def send_for(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                order_id = next(next_id)
                answer = _post(client, order_id)
                if answer.status_code == 200:
                    assert answer.json() == {"status": "accepted"}
                    accepted.add(str(order_id))
                else:
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["error"] == "store_unavailable" and "retry-after" in answer.headers
                    refused.add(str(order_id))
                time.sleep(0.01)

        send_for(1.0)
        before = len(accepted)
        _set_file_size_limit(service.process.pid, 0)  # the disk is full
        send_for(1.5)
        ready_while_full.append(client.get("/readyz"))
        full_refused = len(refused)
        _set_file_size_limit(service.process.pid, resource.RLIM_INFINITY)  # room again
        send_for(1.5)
        ready_after = client.get("/readyz")
    assert before > 20 and full_refused > 20, (before, full_refused)
    assert ready_while_full[0].status_code == 503 and "store_unavailable" in ready_while_full[0].json()["reasons"]
    assert len(accepted) > before + 20, "no order taken once the disk had room"
    assert ready_after.status_code == 200, ready_after.text
    assert accepted.isdisjoint(refused)

    service.stop(signal.SIGKILL)  # only what reached the disk counts from here
    restarted = ServiceProcess(config, port, cwd=tmp_path)
    try:
        restarted.wait_ready()
        wait_for(lambda: all(fake.order(7, order_id) is not None for order_id in accepted), timeout=30)
        wait_for(lambda: ledger_from_metrics(restarted.url, restarted=True).get("pending", 1) == 0, timeout=30)
        ledger = ledger_from_metrics(restarted.url, restarted=True)
    finally:
        restarted.stop(signal.SIGTERM)
    assert [order_id for order_id in refused if fake.order(7, order_id) is not None] == []
    assert ledger["accepted"] == len(accepted)
    assert ledger["accepted"] == ledger["sent"] + ledger["superseded"] + ledger["dead_lettered"] + ledger["pending"]


def test_a_corrupt_store_file_stops_serve_with_a_clear_error_and_is_left_alone(tmp_path: Path, serve: Any) -> None:
    _, config = fake_sendcloud_and_config(serve, tmp_path, store={"url": f"sqlite:///{tmp_path / 'state.db'}"})
    state = tmp_path / "state.db"
    state.write_bytes(b"SQLite format 3\x00" + b"\xde\xad\xbe\xef" * 2000)  # a header, then garbage
    before = state.read_bytes()
    run = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        cwd=tmp_path,
        timeout=30,
    )
    output = (run.stdout + run.stderr).decode()
    assert run.returncode == 2, output
    assert str(state) in output and "cannot open the store" in output, output
    assert "Traceback" not in output
    assert state.read_bytes() == before
    assert not (tmp_path / "state.db-wal").exists()


def test_a_retried_delivery_is_a_duplicate_after_a_kill(tmp_path: Path, serve: Any) -> None:
    """Delivery ids are in the file: a platform retrying a delivery after the service was killed
    and restarted is answered `duplicate`, as it would have been without the restart."""
    _, config = fake_sendcloud_and_config(serve, tmp_path, store={"url": f"sqlite:///{tmp_path / 'state.db'}"})
    port = free_port()
    service = ServiceProcess(config, port, cwd=tmp_path)
    try:
        service.wait_ready()
        with httpx.Client(base_url=service.url, timeout=5) as client:
            assert _post(client, 500_001, delivery="retried-delivery").json() == {"status": "accepted"}
    finally:
        service.stop(signal.SIGKILL)
    restarted = ServiceProcess(config, port, cwd=tmp_path)
    try:
        restarted.wait_ready()
        with httpx.Client(base_url=restarted.url, timeout=5) as client:
            assert _post(client, 500_001, delivery="retried-delivery").json() == {"status": "duplicate"}
            assert _post(client, 500_001, delivery="another-delivery").json()["status"] == "ignored"  # stale
    finally:
        restarted.stop(signal.SIGTERM)
