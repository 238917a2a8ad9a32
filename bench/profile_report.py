#!/usr/bin/env python3
"""Where the service's CPU goes: py-spy's collapsed stacks (`--format raw`) summed by cost centre.

Every sample is charged to ONE cost centre, found by walking its stack from the leaf (innermost
frame) towards the root and taking the first frame that a rule below names. So structlog called
from the flush task counts as logging, HMAC inside the adapter counts as HMAC, and what is left
in a handler's own lines counts to that handler. Each sample is also put on one side: the
webhook request (under `service/app.py:webhook`), the flush task (under `service/buffer.py:_run`),
or the server itself (uvicorn's protocol, the event loop, everything else).

Usage: python profile_report.py profile.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# (cost centre, file regex, function regex); first match walking from the leaf wins
RULES: list[tuple[str, str, str]] = [
    ("logging: structlog render + write", r"structlog/|service/logging\.py|/logging/__init__\.py", r".*"),
    ("metrics: prometheus_client", r"prometheus_client/", r".*"),
    ("HMAC verify", r"(^|/)hmac\.py|(^|/)base64\.py", r".*"),
    ("HMAC verify", r"adapters/base\.py", r"^hmac_sha256_base64_matches$"),
    ("buffer: zlib-compress the order (pending >= 1,000)", r"adapters/sendcloud\.py|(^|/)zlib", r"^compress$"),
    ("flush: zlib-decompress orders for the batch", r"adapters/sendcloud\.py", r"^json$"),
    ("encode the order's JSON (at buffer.add)", r"adapters/sendcloud\.py", r"^encode_order$"),
    ("flush: encode orders for Sendcloud", r"adapters/sendcloud\.py", r"^(encode_orders|encode)$"),
    ("decode + translate (adapters)", r"adapters/", r".*"),
    ("buffer.add + lane store", r"service/buffer\.py", r"^(add|_lane|_version_time|pending)$"),
    ("store writer thread (SQLite statements + commit)", r"service/store/sqlite\.py", r"^(_run|_commit)$"),
    ("buffer.add + lane store", r"service/store/", r".*"),
    ("dedupe (seen/remember)", r"service/dedupe\.py", r".*"),
    (
        "flush: Sendcloud client + httpx",
        r"service/sendcloud\.py|service/ratelimit\.py|httpx/|httpcore/|h11/|anyio/",
        r".*",
    ),
    ("flush: buffer task (take/settle)", r"service/buffer\.py", r".*"),
    ("uuid (batch ids)", r"(^|/)uuid\.py", r".*"),
    ("body read (request.stream)", r"service/app\.py", r"^_read_body$"),
    ("body read (request.stream)", r"starlette/requests\.py", r"^(stream|body)$"),
    ("headers lookup", r"starlette/datastructures\.py", r".*"),
    ("webhook handler (own lines)", r"service/app\.py", r".*"),
    ("starlette routing + middleware", r"starlette/", r".*"),
    ("uvicorn HTTP protocol (httptools)", r"uvicorn/", r".*"),
    ("event loop (asyncio/uvloop)", r"asyncio/|uvloop/", r".*"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def classify(frames: list[str]) -> tuple[str, str]:
    parsed = []
    for frame in frames:
        match = _FRAME.match(frame)
        # py-spy names methods Class.method: rules match the bare function name
        parsed.append((match["func"].rpartition(".")[2], match["file"]) if match else (frame, ""))
    side = "server + event loop"
    for func, file in parsed:
        if file.endswith("service/app.py") and func in ("webhook", "_handle"):
            side = "webhook request"
            break
        if file.endswith("service/buffer.py") and func in ("_run", "_flush", "_report"):
            side = "flush task"
            break
    for func, file in reversed(parsed):
        for name, file_rx, func_rx in RULES:
            if re.search(file_rx, file) and re.search(func_rx, func):
                return side, name
    return side, "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20, help="also list the top N leaf functions")
    args = parser.parse_args()
    centres: Counter[str] = Counter()
    sides: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        side, centre = classify(frames)
        centres[centre] += count
        sides[side] += count
        leaves[frames[-1] if frames else "?"] += count
        total += count
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    print()
    print("| cost centre | share of CPU samples |")
    print("|---|---|")
    for name, count in centres.most_common():
        print(f"| {name} | {100 * count / total:.1f} % |")
    print()
    print("| side | share |")
    print("|---|---|")
    for name, count in sides.most_common():
        print(f"| {name} | {100 * count / total:.1f} % |")
    print()
    print(f"top {args.top} leaf frames (self time):")
    for name, count in leaves.most_common(args.top):
        print(f"  {100 * count / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
