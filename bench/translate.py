#!/usr/bin/env python3
"""Translate micro-benchmark: decode + translate + encode of one Shopify order, against a bare
`msgspec.json.decode` of the same bytes into a dict, timed in the same run.

The reference is the least any receiver does with a JSON body (parse it); the target is that
order-bridge's whole translation (typed decode of the fields it uses, mapping, validation
against the Sendcloud spec, and encoding the Sendcloud JSON) costs no more: ratio <= 1.0.

Run:  make bench      (or: taskset -c 1 .venv/bin/python bench/translate.py [--repeat N])
Timing: timeit; each row's loop count comes from autorange (>= 0.2 s), then --repeat rounds;
the best round is reported (per-op us), the median beside it. GC is off while timing (timeit's
default), as in ../shared/bench/translate_bench.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import msgspec

from adapters import get_adapter
from adapters.sendcloud import ENCODER

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GC_ON = "--gc" in sys.argv


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    timer = timeit.Timer(fn, setup="import gc; gc.enable()" if GC_ON else "pass")
    number, _ = timer.autorange()
    rounds = [t / number for t in timer.repeat(repeat=repeat, number=number)]
    return min(rounds) * 1e6, statistics.median(rounds) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector on while timing")
    args = parser.parse_args()

    shopify_body = (HERE / "shopify_order.json").read_bytes()
    woo_body = (ROOT / "adapters" / "samples" / "woocommerce.json").read_bytes()
    shopify, woo = get_adapter("shopify"), get_adapter("woocommerce")
    bare = msgspec.json.Decoder()

    def shopify_whole() -> bytes:
        return ENCODER.encode(shopify.translate(shopify_body, 7))

    def woo_whole() -> bytes:
        return ENCODER.encode(woo.translate(woo_body, 7))

    shopify_whole(), woo_whole()  # warm up, and fail early if a sample stopped translating
    rows: list[tuple[str, Callable[[], object]]] = [
        ("shopify: msgspec.json.decode -> dict (reference)", lambda: bare.decode(shopify_body)),
        ("shopify: json.loads -> dict (context)", lambda: json.loads(shopify_body)),
        ("shopify: translate (typed decode + map)", lambda: shopify.translate(shopify_body, 7)),
        ("shopify: translate + encode (target)", shopify_whole),
        ("woocommerce: msgspec.json.decode -> dict (reference)", lambda: bare.decode(woo_body)),
        ("woocommerce: translate + encode", woo_whole),
    ]
    print(f"python {platform.python_version()}, msgspec {msgspec.__version__}, repeat={args.repeat}")
    print(f"payloads: shopify {len(shopify_body)} bytes, woocommerce {len(woo_body)} bytes")
    results: dict[str, float] = {}
    print(f"{'what':<55} {'best us':>9} {'median us':>10}")
    for label, fn in rows:
        best, median = _time(fn, args.repeat)
        results[label] = best
        print(f"{label:<55} {best:>9.2f} {median:>10.2f}")
    shopify_ratio = results[rows[3][0]] / results[rows[0][0]]
    woo_ratio = results[rows[5][0]] / results[rows[4][0]]
    print(f"ratio shopify translate+encode / bare decode: {shopify_ratio:.2f} (target <= 1.00)")
    print(f"ratio woocommerce translate+encode / bare decode: {woo_ratio:.2f}")
    print("reproduce: make bench   (taskset -c 1 .venv/bin/python bench/translate.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
