"""Measure a running `order-bridge serve`: resident memory and CPU time while signed webhooks arrive.

Used to size the Deployment's requests and limits (deploy/README.md, "Resources"). It posts
`--orders` Shopify sample orders, each with its own order id and delivery id (so nothing is
coalesced or deduplicated), `--concurrency` at a time, and prints the process's VmRSS / VmHWM
(from /proc/PID/status) and CPU seconds (from /proc/PID/stat) at the start and at every
checkpoint. Linux only; needs the service's own dependencies (run it with the service's Python).

    python deploy/measure.py --pid PID --url http://127.0.0.1:18080/webhooks/shopify/1 \
        --secret sandbox-shopify-secret --orders 10000 --checkpoint 2500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import httpx

from adapters import get_adapter

SAMPLE = Path(__file__).resolve().parent.parent / "adapters" / "samples" / "shopify.json"


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(label: str, pid: int, extra: str = "") -> None:
    mem = memory_kib(pid)
    print(
        f"{label:>14}: VmRSS {mem['VmRSS'] / 1024:7.1f} MiB  VmHWM {mem['VmHWM'] / 1024:7.1f} MiB  "
        f"CPU {cpu_seconds(pid):7.2f} s  {extra}",
        flush=True,
    )


async def post_orders(args: argparse.Namespace) -> None:
    template = json.loads(SAMPLE.read_bytes())
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(args.orders):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = json.dumps({**template, "id": args.first_id + n}).encode()
            response = await client.post(args.url, content=body, headers=get_adapter("shopify").sign(body, args.secret))
            statuses[response.status_code] += 1
            done = sum(statuses.values())
            if done % args.checkpoint == 0:
                report(f"{done} posted", args.pid, str(dict(statuses)))

    report("idle", args.pid)
    cpu_before, started = cpu_seconds(args.pid), time.perf_counter()
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(args.pid) - cpu_before
    print(
        f"{args.orders} webhooks in {elapsed:.1f} s ({args.orders / elapsed:.0f}/s); service CPU {cpu:.2f} s "
        f"= {cpu / args.orders * 1000:.2f} ms per webhook; answers {dict(statuses)}",
        flush=True,
    )
    await asyncio.sleep(args.settle)
    report(f"+{args.settle:g} s", args.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, required=True, help="the order-bridge process")
    parser.add_argument("--url", required=True, help="webhook URL of a shopify integration")
    parser.add_argument("--secret", required=True, help="that integration's webhook secret")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checkpoint", type=int, default=2_500, help="report every N answers")
    parser.add_argument("--first-id", type=int, default=6_000_000_000_000, help="order id of the first order")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before the last report")
    asyncio.run(post_orders(parser.parse_args()))


if __name__ == "__main__":
    main()
