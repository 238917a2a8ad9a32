#!/usr/bin/env python3
"""Paced, open-loop load generator: distinct signed Shopify orders at a fixed rate.

wrk measures the maximum rate (closed loop: each connection sends its next request when the
previous one is answered). The latency, end-to-end, batching and memory scenarios need a fixed
*offered* rate instead, and wrk2 is not packaged in Debian; so this generator (asyncio + uvloop,
raw HTTP/1.1 keep-alive connections, no HTTP library) schedules request k of a stream at
`t0 + k / rate` whatever happened before (open loop), and measures each latency from that
*intended* start, so a stall of the server is not hidden by the generator waiting for it
(coordinated omission). It also reports the latency from the moment the request was actually
written. Run it pinned to the load CPU (`taskset -c 1`). Its own floor is visible in the same
run: the scenarios point it at the bare app at the same rate.

Timers of the event loop fire with about 1 ms resolution, so requests due in the same
millisecond leave together (a burst of rate/1000); that burstiness is real load and is counted.

Streams (`--stream`, repeatable): `name=N,port=P,ids=1-10,rate=R[,count=C][,duration=S][,tag=T]`
— requests to `http://127.0.0.1:P/webhooks/shopify/<id>` cycling over `ids`, R per second,
C requests (or R*S). Order ids are `orders.order_id(8, tag, k)`: use a different tag for
every load sent to the same running service. Every request is bounded: the run stops after
the last request is due plus `--drain` seconds.

Prints one JSON object (and writes it to `--out`): per stream the counts by status and
outcome, the achieved rate, and latency percentiles (ms) of the requests due after `--warmup`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import uvloop
from orders import SECRET, STATIC_HEADERS, Signer, body_prefix, order_id, tail

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
clock = time.perf_counter


@dataclass
class Stream:
    name: str
    port: int
    ids: list[int]
    rate: float
    count: int
    tag: int
    path_prefix: str = "/webhooks/shopify/"
    # results
    latencies: list[float] = field(default_factory=list)  # from the intended start, s
    service: list[float] = field(default_factory=list)  # from the actual write, s
    statuses: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    reconnects: int = 0
    sent: int = 0
    alive: int = 0
    done: int = 0
    first_due: float = 0.0
    last_done: float = 0.0
    queue: deque[tuple[int, float]] = field(default_factory=deque)
    idle: list[Conn] = field(default_factory=list)


def parse_stream(spec: str, duration: float) -> Stream:
    fields = dict(part.split("=", 1) for part in spec.split(","))
    low, _, high = fields["ids"].partition("-")
    ids = list(range(int(low), int(high or low) + 1))
    rate = float(fields["rate"])
    count = int(fields["count"]) if "count" in fields else round(rate * float(fields.get("duration", duration)))
    return Stream(fields["name"], int(fields["port"]), ids, rate, count, int(fields.get("tag", 0)))


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, gen: Generator, stream: Stream) -> None:
        self.gen = gen
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.due = 0.0
        self.sent_at = 0.0
        self.busy = False
        self.warm = False
        self.k = -1
        self.retried = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass

    def send(self, k: int, due: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.k = k
        self.due = due
        self.warm = due >= self.gen.warm_until
        request = self.gen.request(self.stream, k)
        self.sent_at = clock()
        self.transport.write(request)
        self.stream.sent += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end]
        match = _CONTENT_LENGTH.search(head)
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(self.buf) < total:
            return
        now = clock()
        body = self.buf[end + 4 : total]
        self.buf = self.buf[total:]
        status = int(head[9:12])
        self.finish(status, body, now)

    def finish(self, status: int, body: bytes, now: float) -> None:
        s = self.stream
        s.done += 1
        s.last_done = now
        s.statuses[status] += 1
        if status == 200:
            found = re.search(rb'"(?:status|ok)":\s*"?(\w+)', body)
            s.outcomes[found.group(1).decode() if found else "?"] += 1
        if self.warm:
            s.latencies.append(now - self.due)
            s.service.append(now - self.sent_at)
        self.busy = False
        self.retried = False
        if s.queue:
            k, due = s.queue.popleft()
            self.send(k, due)
        else:
            s.idle.append(self)
        self.gen.check_done()

    def connection_lost(self, exc: Exception | None) -> None:
        s = self.stream
        self.transport = None
        s.alive -= 1
        if self in s.idle:
            s.idle.remove(self)
        if self.busy:
            self.busy = False
            if not self.retried:
                # the server closed a keep-alive connection as we wrote on it: send it again
                s.reconnects += 1
                s.sent -= 1
                s.queue.appendleft((self.k, self.due))
            else:
                s.errors += 1
                s.done += 1
                self.gen.check_done()
        if s.queue:
            task = asyncio.ensure_future(self.gen.connect(s, retried=True))
            self.gen.tasks.add(task)
            task.add_done_callback(self.gen.tasks.discard)


class Generator:
    def __init__(self, streams: list[Stream], connections: int, warmup: float, secret: str) -> None:
        self.streams = streams
        self.connections = connections
        self.warmup = warmup
        self.prefix = body_prefix()
        self.signer = Signer(self.prefix, secret)
        self.static = "".join(f"{name}: {value}\r\n" for name, value in STATIC_HEADERS)
        self.t0 = 0.0
        self.warm_until = 0.0
        self.all_done = asyncio.Event()
        self.tasks: set[asyncio.Future[None]] = set()

    def request(self, stream: Stream, k: int) -> bytes:
        oid = order_id(8, stream.tag, k)
        body_tail = tail(oid)
        integration = stream.ids[k % len(stream.ids)]
        head = (
            f"POST {stream.path_prefix}{integration} HTTP/1.1\r\nHost: 127.0.0.1:{stream.port}\r\n{self.static}"
            f"Content-Length: {len(self.prefix) + len(body_tail)}\r\nX-Shopify-Webhook-Id: bench-{oid}\r\n"
            f"X-Shopify-Hmac-Sha256: {self.signer.sign(body_tail)}\r\n\r\n"
        )
        return head.encode() + self.prefix + body_tail

    def check_done(self) -> None:
        if all(s.done >= s.count for s in self.streams):
            self.all_done.set()

    async def pace(self, stream: Stream) -> None:
        interval = 1.0 / stream.rate
        for k in range(stream.count):
            due = self.t0 + k * interval
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            if stream.idle:
                stream.idle.pop().send(k, due)
            else:
                stream.queue.append((k, due))
                if stream.alive < self.connections:
                    await self.connect(stream)

    async def connect(self, stream: Stream, retried: bool = False) -> None:
        """One more connection for `stream`; it takes the first queued request, if any."""
        stream.alive += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: Conn(self, stream), "127.0.0.1", stream.port
            )
        except OSError:
            stream.alive -= 1
            while stream.queue:
                stream.queue.popleft()
                stream.errors += 1
                stream.done += 1
            self.check_done()
            return
        if stream.queue:
            k, due = stream.queue.popleft()
            conn.retried = retried
            conn.send(k, due)
        else:
            stream.idle.append(conn)

    async def run(self, drain: float) -> None:
        for stream in self.streams:
            for _ in range(min(self.connections, max(1, stream.count))):
                await self.connect(stream)
        self.t0 = clock() + 0.05
        self.warm_until = self.t0 + self.warmup
        for stream in self.streams:
            stream.first_due = self.t0
        last_due = max((s.count - 1) / s.rate for s in self.streams if s.count) if self.streams else 0.0
        pacers = [asyncio.create_task(self.pace(s)) for s in self.streams if s.count]
        self.check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_done.wait(), timeout=last_due + 0.05 + drain)
        for task in pacers:
            task.cancel()
        for stream in self.streams:
            for conn in stream.idle:
                if conn.transport is not None:
                    conn.transport.close()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {key: None for key in ("p50", "p90", "p99", "p999", "max", "mean")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def summary(gen: Generator) -> dict[str, Any]:
    out: dict[str, Any] = {"t0_monotonic": None, "streams": {}}
    for s in gen.streams:
        span = (s.last_done - s.first_due) if s.done else 0.0
        out["streams"][s.name] = {
            "port": s.port,
            "integrations": [s.ids[0], s.ids[-1]],
            "offered_rate": s.rate,
            "count": s.count,
            "sent": s.sent,
            "answered": sum(s.statuses.values()),
            "statuses": {str(k): v for k, v in sorted(s.statuses.items())},
            "outcomes": dict(s.outcomes),
            "connection_errors": s.errors,
            "resent_after_close": s.reconnects,
            "unsent": s.count - s.sent,
            "achieved_rate": round(sum(s.statuses.values()) / span, 1) if span > 0 else None,
            "measured": len(s.latencies),
            "latency_ms": _percentiles(s.latencies),
            "service_ms": _percentiles(s.service),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stream", action="append", required=True, help="name=N,port=P,ids=1-10,rate=R,...")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds, for streams without count")
    parser.add_argument("--connections", type=int, default=32, help="per stream")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds not counted in the latencies")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for answers after the last send")
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    streams = [parse_stream(spec, args.duration) for spec in args.stream]
    gen = Generator(streams, args.connections, args.warmup, args.secret)
    started = time.monotonic()
    uvloop.run(gen.run(args.drain))
    result = summary(gen)
    result["t0_monotonic"] = started
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
