#!/usr/bin/env python3
"""Soak: `order-bridge serve` under a steady webhook rate for a bounded time, with Sendcloud
faults sprinkled in; RSS and pending orders must stay flat and the ledger must balance.

Run:  make soak                      (10 minutes)
      .venv/bin/python bench/soak.py --seconds 120 --rate 40

The fake Sendcloud runs in this process (so faults can be injected) on 127.0.0.1; the service is a
child process pinned to CPU 0 when `taskset` exists. Every 10 s a sample line is printed (RSS,
pending, oldest pending age, orders accepted by Sendcloud, 429s); at the end a summary, and the exit
status is 1 if any promise broke: a webhook not answered 200, an order missing or not at its latest
version in Sendcloud, a 429, the ledger not balancing, or RSS growing more than 20 % from the
second minute to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters import get_adapter  # noqa: E402
from service.fake_sendcloud import STILL_PROCESSING, Account, FakeSendcloud, create_app  # noqa: E402

SECRET = "soak-secret"
INTEGRATIONS = list(range(1, 6))
FAULTS = ["429", "503", "reset", "slow", "conflict", "outage", "invalid"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(sendcloud_url: str) -> str:
    lines = [
        "[sendcloud]",
        f'base_url = "{sendcloud_url}"',
        'public_key = "soak"',
        'secret_key = "soak"',
        "timeout_seconds = 2.0",
        'currencies = ["EUR", "GBP", "USD"]',
        "[buffer]",
        "debounce_seconds = 1.0",
        "max_wait_seconds = 5.0",
        # Small bounds on the two memories that grow with distinct deliveries and orders, so the
        # run reaches them within its first two minutes and "flat" means "bounded".
        "dedupe_max_entries = 3000",
        "remember_sent = 1000",
        "[logging]",
        'level = "WARNING"',
    ]
    for integration in INTEGRATIONS:
        lines += ["[[integrations]]", f"id = {integration}", 'platform = "shopify"', f'secrets = ["{SECRET}"]']
    return "\n".join(lines) + "\n"


def _metrics(url: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "order_bridge_order_versions_total":
                values[sample.labels["fate"]] = sample.value
            elif sample.name in ("order_bridge_orders_pending", "order_bridge_oldest_pending_age_seconds"):
                values[sample.name.removeprefix("order_bridge_")] = sample.value
    return values


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, seconds: float, rate: float) -> None:
        self.seconds = seconds
        self.rate = rate
        self.fake = FakeSendcloud(accounts={"soak": Account("soak", None)}, currencies=frozenset({"EUR", "USD"}))
        self.latest: dict[tuple[int, str], str] = {}  # (integration, order id) → updated_at last accepted
        self.refused: set[tuple[int, str]] = set()  # orders sent in a currency the fake refuses
        self.not_200: list[int] = []
        self.samples: list[tuple[float, int, float, float]] = []
        self.rng = random.Random(7)
        self.known: dict[int, list[str]] = {}  # order ids per integration, for updates
        self.injected_429 = 0
        self.sample = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())

    def _delivery(self, n: int) -> tuple[str, bytes, dict[str, str], tuple[int, str], str, bool]:
        """A new order, or (one in three) an update of an earlier one; a few in GBP (refused)."""
        integration = INTEGRATIONS[n % len(INTEGRATIONS)]
        known = self.known.setdefault(integration, [])
        if known and self.rng.random() < 0.33:
            order_id = self.rng.choice(known)
        else:
            order_id = str(1_000_000 + n)
            known.append(order_id)
        updated = f"2026-11-27T{10 + n // 360000 % 10:02d}:{n // 6000 % 60:02d}:{n // 100 % 60:02d}.{n % 100:02d}0000Z"
        invalid = self.rng.random() < 0.002
        order = {**self.sample, "id": int(order_id), "updated_at": updated, "currency": "GBP" if invalid else "USD"}
        body = json.dumps(order).encode()
        path = f"/webhooks/shopify/{integration}"
        return (
            path,
            body,
            get_adapter("shopify").sign(body, SECRET, topic="orders/updated"),
            (integration, order_id),
            updated,
            invalid,
        )

    def _inject(self, fault: str) -> None:
        if fault == "429":
            self.fake.fail_next(429, times=3)
            self.injected_429 += 3
        elif fault == "503":
            self.fake.fail_next(503, times=5, body=b"<html>down</html>", content_type="text/html")
        elif fault == "reset":
            self.fake.reset_next(times=2)
        elif fault == "slow":
            self.fake.delay_next(3.0, times=2)
        elif fault == "conflict":
            error = {"status": "400", "code": "invalid", "detail": STILL_PROCESSING, "source": {"pointer": "/data"}}
            self.fake.fail_next(400, times=2, body=json.dumps({"errors": [error]}).encode())
        elif fault == "outage":
            self.fake.outage(10)
        print(f"  fault injected: {fault}", flush=True)

    async def _load(self, url: str, pid: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            began = time.monotonic()
            next_sample = began + 10
            next_fault = began + 30
            faults = iter(FAULTS * 100)
            n = 0
            while (now := time.monotonic()) - began < self.seconds:
                path, body, headers, key, updated, invalid = self._delivery(n)
                answer = await client.post(path, content=body, headers=headers)
                if answer.status_code != 200:
                    self.not_200.append(answer.status_code)
                elif answer.json()["status"] == "accepted":
                    if self.latest.get(key, "") <= updated:
                        self.latest[key] = updated
                    if invalid:
                        self.refused.add(key)
                    else:
                        self.refused.discard(key)
                n += 1
                if now >= next_fault:
                    self._inject(next(faults))
                    next_fault += 60
                if now >= next_sample:
                    values = _metrics(url)
                    rss = _rss_kib(pid)
                    self.samples.append(
                        (now - began, rss, values["orders_pending"], values["oldest_pending_age_seconds"])
                    )
                    print(
                        f"{now - began:6.0f} s  rss {rss / 1024:6.1f} MiB  pending {values['orders_pending']:5.0f}  "
                        f"oldest {values['oldest_pending_age_seconds']:5.1f} s  sent {values.get('sent', 0):7.0f}  "
                        f"429s {self.fake.count_429()}",
                        flush=True,
                    )
                    next_sample += 10
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))

    def run(self) -> int:
        fake_sock = socket.socket()
        fake_sock.bind(("127.0.0.1", 0))
        fake_url = f"http://127.0.0.1:{fake_sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(create_app(self.fake), log_level="warning", access_log=False))
        threading.Thread(target=server.run, kwargs={"sockets": [fake_sock]}, daemon=True).start()
        workdir = Path(tempfile.mkdtemp(prefix="soak-"))
        config = workdir / "config.toml"
        config.write_text(_config(fake_url + "/api/v3"))
        port = _port()
        command = [sys.executable, "-m", "service", "serve", "--config", str(config), "--port", str(port)]
        if shutil.which("taskset"):
            command = ["taskset", "-c", "0", *command]
        log = (workdir / "service.log").open("wb")
        service = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            shape = f"{self.seconds:.0f} s at {self.rate:.0f} webhooks/s, {len(INTEGRATIONS)} integrations"
            print(f"soak: {shape}; log {log.name}")
            asyncio.run(self._load(url, service.pid))
            deadline = time.monotonic() + 60
            while _metrics(url)["orders_pending"] and time.monotonic() < deadline:
                time.sleep(0.5)
            final = _metrics(url)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
            log.close()
            server.should_exit = True
        return self._verdict(final)

    def _verdict(self, final: dict[str, float]) -> int:
        problems = []
        throttled = self.fake.count_429() - self.injected_429
        if self.not_200:
            problems.append(f"{len(self.not_200)} webhooks not answered 200: {sorted(set(self.not_200))}")
        missing = stale = 0
        for key, updated in self.latest.items():
            stored = self.fake.order(*key)
            if key in self.refused:
                continue
            if stored is None:
                missing += 1
            elif datetime.fromisoformat(stored.order["order_details"]["order_updated_at"]) != datetime.fromisoformat(
                updated
            ):
                stale += 1
        if missing or stale:
            problems.append(f"{missing} orders missing and {stale} not at their latest version in Sendcloud")
        if throttled:
            problems.append(f"{throttled} requests were throttled (429) by the rate limit")
        settled = final.get("sent", 0) + final.get("superseded", 0) + final.get("dead_lettered", 0)
        if final.get("accepted", 0) != settled + final["orders_pending"]:
            problems.append(f"ledger does not balance: {final}")
        minute = [rss for t, rss, *_ in self.samples if 60 <= t < 120] or [s[1] for s in self.samples[:6]]
        last = [rss for t, rss, *_ in self.samples if t >= self.samples[-1][0] - 60] if self.samples else []
        growth = (sum(last) / len(last)) / (sum(minute) / len(minute)) - 1 if minute and last else 0.0
        if growth > 0.20:
            problems.append(f"RSS grew {growth:.0%} from the second minute to the last")
        peak_pending = max((s[2] for s in self.samples), default=0)
        print(
            f"\nsummary: {len(self.latest)} orders, ledger {final}, RSS change {growth:+.1%} "
            f"(second minute → last), peak pending {peak_pending:.0f}, rate-limit 429s {throttled}, "
            f"dead-lettered by design {len(self.refused)}"
        )
        for problem in problems:
            print(f"FAIL: {problem}")
        print("PASS" if not problems else "FAILED")
        return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--rate", type=float, default=40.0, help="webhooks per second")
    args = parser.parse_args()
    return Soak(args.seconds, args.rate).run()


if __name__ == "__main__":
    sys.exit(main())
