#!/usr/bin/env python3
"""The SQLite store's own figures: start-up with a full file, bytes per pending order, growth.

1. Bytes per pending order: N distinct bench orders (10 integrations) added to a new store file
   (`synchronous = "full"`, through `SqliteStore`, as the webhook does), then the file's size / N.
2. Start-up: `order-bridge serve` on that file (Sendcloud unreachable on 127.0.0.1, so nothing
   leaves), timed from the process's start to its first `/readyz` 200; RSS then, against the same
   service on an empty file: the process's memory per pending order.
3. Growth under steady load: rounds of 1,000 new orders, each batch taken and settled as sent,
   with `remember_sent` = 5,000 per lane; the file's size after each round. Flat means bounded.

Usage: python bench/store_bench.py [N] [--out DIR]   (default N = 50,000). Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl
from orders import body_prefix, order_id, tail

from adapters import get_adapter
from adapters.sendcloud import encode_order
from service.store import Arrival, Settlement, StoreSettings
from service.store.sqlite import SqliteStore

HERE = Path(__file__).resolve().parent


def _orders(n: int, phase: int = 1) -> list[Arrival]:
    adapter = get_adapter("shopify")
    prefix = body_prefix()
    now = time.time()
    arrivals = []
    for k in range(n):
        integration = k % 10 + 1
        order = adapter.translate(prefix + tail(order_id(8, phase, k)), integration)
        encoded = encode_order(order)
        updated = (order.order_details.order_updated_at or order.order_details.order_created_at).timestamp()
        arrivals.append(Arrival(integration, "shopify", encoded, updated, now, f"bench-{k}"))
    return arrivals


async def _fill(path: Path, arrivals: list[Arrival]) -> float:
    store = SqliteStore.open(path, synchronous="full", settings=StoreSettings(compress_above=10**9))
    began = time.perf_counter()
    for start in range(0, len(arrivals), 256):  # as concurrent webhooks do: many adds per commit
        await asyncio.gather(*(store.add(a) for a in arrivals[start : start + 256]))
    took = time.perf_counter() - began
    await store.close()
    return took


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if not p.name.endswith(".lock"))


def _serve(path: Path, folder: Path) -> tuple[float, float]:
    """Seconds from process start to `/readyz` 200, and the RSS (MiB) then."""
    port = bl.free_port(18900)
    config = folder / f"{path.stem}.toml"
    config.write_text(
        bl.config_text(port=port, sendcloud_url="http://127.0.0.1:9/api/v3", store=f"sqlite:///{path}", level="WARNING")
    )
    began = time.monotonic()
    process = subprocess.Popen(
        [str(bl.VENV / "bin" / "order-bridge"), "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        while True:
            if process.poll() is not None:
                raise RuntimeError("order-bridge serve exited")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - began > 60:
                raise RuntimeError("not ready in 60 s")
            time.sleep(0.02)
        ready = time.monotonic() - began
        time.sleep(0.5)
        rss = bl.rss_bytes(process.pid) / 2**20
    finally:
        process.terminate()
        process.wait(timeout=60)
    return ready, rss


async def _growth(path: Path) -> list[int]:
    store = SqliteStore.open(
        path, synchronous="normal", settings=StoreSettings(remember_sent=5_000, compress_above=10**9)
    )
    sizes = []
    for round_ in range(12):
        arrivals = _orders(1_000, phase=10 + round_)
        await asyncio.gather(*(store.add(a) for a in arrivals))
        for integration in range(1, 11):
            while (batch := await store.take(integration, 100, batch_id=f"r{round_}", attempt=1)) is not None:
                await store.settle(batch, Settlement(batch.entries, (), (), ()))
        sizes.append(_file_bytes(path))
    await store.close()
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=50_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="store-bench-"))
    full, empty = folder / "full.db", folder / "empty.db"
    arrivals = _orders(args.n)
    fill_s = asyncio.run(_fill(full, arrivals))
    asyncio.run(_fill(empty, []))
    per_order = _file_bytes(full) / args.n
    json_bytes = sum(len(a.order.data) for a in arrivals) / args.n
    ready_full, rss_full = _serve(full, folder)
    ready_empty, rss_empty = _serve(empty, folder)
    sizes = asyncio.run(_growth(folder / "growth.db"))
    result = {
        "n": args.n,
        "fill_seconds": round(fill_s, 2),
        "adds_per_second_full_sync": round(args.n / fill_s),
        "file_bytes_per_pending_order": round(per_order),
        "order_json_bytes": round(json_bytes),
        "ready_seconds_full": round(ready_full, 2),
        "ready_seconds_empty": round(ready_empty, 2),
        "rss_mib_full": round(rss_full, 1),
        "rss_mib_empty": round(rss_empty, 1),
        "rss_bytes_per_pending_order": round((rss_full - rss_empty) * 2**20 / args.n),
        "growth_file_bytes_per_round": sizes,
    }
    lines = [
        f"## the SQLite store ({args.n:,} pending orders, 10 integrations)",
        "",
        "| what | measured |",
        "|---|---|",
        f"| file bytes per pending order (order JSON alone: {json_bytes:,.0f} B) | {per_order:,.0f} B |",
        f"| filling it: {args.n:,} adds, 256 at a time, synchronous = full | {fill_s:.1f} s "
        f"({args.n / fill_s:,.0f} adds/s) |",
        f"| `serve` ready (`/readyz` 200) on the full file / on an empty one | {ready_full:.2f} s / "
        f"{ready_empty:.2f} s (target ≤ 5 s) |",
        f"| process RSS on the full file / on an empty one | {rss_full:.1f} / {rss_empty:.1f} MiB = "
        f"{result['rss_bytes_per_pending_order']:,} B per pending order |",
        "| file size after each round of 1,000 orders sent (remember_sent 5,000 per lane) | "
        + ", ".join(f"{s / 2**20:.1f}" for s in sizes)
        + " MiB |",
        "",
        f"reproduce: `.venv/bin/python bench/store_bench.py {args.n}`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store.md").write_text(text + "\n")
        (args.out / "store.json").write_text(json.dumps(result, indent=1))
    for stray in folder.iterdir():
        stray.unlink()
    os.rmdir(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
