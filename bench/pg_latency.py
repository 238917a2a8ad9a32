"""Latency at a fixed rate, the SQLite store beside the PostgreSQL store, same run (issue 12's
"p99 at half load" target): `order-bridge serve` pinned to SERVER_CPU, the database (production
settings: bench/pg_server.py) pinned to PG_CPU (default: SERVER_CPU too), the fake Sendcloud and
the load generator on LOAD_CPU, distinct signed webhooks over 10 integrations at `--rate` req/s.

    python bench/pg_latency.py --rate 1500 [--duration 20] [--warmup 3] [--out DIR]

Pass half of the PostgreSQL store's median req/s from `bash bench/run_ingest.sh -s`. Only
127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import benchlib as bl
import scenarios as sc

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[str]:
    started = subprocess.run(
        [bl.PY, str(HERE / "pg_server.py"), "start", str(folder), "--cpu", os.environ.get("PG_CPU", bl.SERVER_CPU)],
        capture_output=True,
        text=True,
        check=True,
    )
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([bl.PY, str(HERE / "pg_server.py"), "stop", str(folder)], capture_output=True, check=False)


def run(out: Path, kind: str, rate: int, duration: int, warmup: int) -> dict[str, Any]:
    fport = 18761
    url = f"http://127.0.0.1:{fport}/api/v3"
    limits: dict[str, Any] = {"requests_per_minute": bl.KEEP_UP_RPM, "burst_per_second": bl.KEEP_UP_BURST}
    spec = f"ids=1-10,rate={rate},duration={duration + warmup},tag=1"
    with contextlib.ExitStack() as stack:
        fake_proc = stack.enter_context(sc.fake(out, fport, [bl.FAKE_PUBLIC], rate_limit=False))
        store = (
            stack.enter_context(postgres(out / f"{kind}.pg")) if kind == "postgres" else f"sqlite:///{out / kind}.db"
        )
        svc = stack.enter_context(sc.service(out, kind, 18764, sendcloud_url=url, store=store, **limits))
        result = sc.loadgen(
            out, kind, [f"name=s,port={svc.port},{spec}"], [svc.pid, fake_proc.pid], warmup=warmup, connections=32
        )
        result["pending_after"] = bl.metrics(svc.port).get("order_bridge_orders_pending", 0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/bench-results") / datetime.utcnow().strftime("%Y%m%dT%H%M%SZ") / "pg-latency",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| store | offered req/s | achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-200 | other CPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    for kind in ("sqlite", "postgres"):
        bl.wait_quiet(15, 60.0)
        result = run(args.out, kind, args.rate, args.duration, args.warmup)
        s = next(iter(result["streams"].values()))
        lat = s["latency_ms"]
        non200 = s["answered"] - s["statuses"].get("200", 0) + s["connection_errors"] + s["unsent"]
        print(
            f"| {kind} | {args.rate:,} | {s['achieved_rate']:,} | {lat['p50']:.2f} | {lat['p90']:.2f} "
            f"| {lat['p99']:.2f} | {lat['p999']:.2f} | {lat['max']:.2f} | {non200} | {result['other_cpu_pct']} |"
        )
        results[kind] = s
    (args.out / "summary.json").write_text(json.dumps(results, indent=1))
    print(f"\nraw: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
