"""Sendcloud's per-account rate limit, kept on our side so we are not the one who trips it.

Sendcloud allows 100 unsafe (POST) requests a minute per account, in bursts of at most 15 a
second, and answers 429 beyond that. It does not document how it counts. `RateLimiter` keeps
both limits as *sliding windows*: a token is granted only while fewer than `per_second` tokens
were granted in the last second **and** fewer than `per_minute` in the last 60 seconds.

Why windows and not token buckets: a bucket of capacity C refilled at C per minute grants up
to 2·C in one minute (the full bucket, then a minute of refill), and a burst bucket of
capacity B refilled at B/s grants up to 2·B within one second. Against a counter of "requests
in the last minute" (Django REST framework's throttles, which Sendcloud's error format
suggests, count exactly that) a bucket therefore trips the limit on every busy start. A
window that never holds more than N grants is safe against a sliding counter, a fixed-window
counter and a token bucket of capacity N alike, and it still allows the full rate: N a minute,
bursts of `per_second` at once.

Safety margin: a request granted here reaches Sendcloud a network round trip later, and
requests granted one after the other can arrive closer together than they were granted. So
the windows hold less than the documented limits: `margin` (default 0.9) of the per-minute
limit and `burst_per_second - burst_headroom` (default: one less) per second, never less
than 1.

Pacing: the windows alone let a busy account spend the minute's grants as fast as the
per-second window allows and then grant nothing until the oldest expire — with ten lanes
flushing every 5 s that was 45 s of flow and a 15 s stall, every minute (docs/benchmarks.md).
So grants are also paced, like a token bucket that never outruns the minute window: up to
`burst` (a tenth of the minute's budget, at most the per-second window) at once, the rest
accruing evenly, `(per_minute - burst) / 60` a second. Any 60 s then holds at most `per_minute`
grants from the pacing alone, the minute window never has to stop the flow, and a lane held
back meanwhile absorbs more orders into its next batch. Sustained, that is `per_minute - burst`
requests a minute (81 of Sendcloud's 100 by default) of 100 orders each when it matters.

Waiters are served first come, first served (an `asyncio.Lock`, whose waiters queue in
order), so one busy lane cannot starve the others sharing the account. A config has one
Sendcloud account, so the service builds one limiter, inside its one `SendcloudClient`, and
every lane draws from the same windows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_SECOND = 1.0
_MINUTE = 60.0
#: Waits shorter than this are treated as over: a fake clock (or an event loop that wakes a
#: timer a hair early) must not spin on float rounding at a window's edge.
_EPSILON = 1e-6


class RateLimiter:
    """Grants tokens at most `per_second` per second and `per_minute` per minute, in FIFO order.

    `clock` and `sleep` are injectable so tests can run the limiter on a fake clock; they must
    agree (after `await sleep(d)`, `clock()` has advanced by at least `d`).
    """

    def __init__(
        self,
        *,
        requests_per_minute: int = 100,
        burst_per_second: int = 15,
        margin: float = 0.9,
        burst_headroom: int = 1,
        paced: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests_per_minute < 1 or burst_per_second < 1:
            raise ValueError("requests_per_minute and burst_per_second must be at least 1")
        if not 0 < margin <= 1:
            raise ValueError("margin must be in (0, 1]")
        if burst_headroom < 0:
            raise ValueError("burst_headroom must not be negative")
        #: Grants allowed in any 60 s window: the configured limit less the margin.
        self.per_minute = max(1, math.floor(requests_per_minute * margin))
        #: Grants allowed in any 1 s window: the configured burst less the headroom.
        self.per_second = max(1, burst_per_second - burst_headroom)
        #: Grants that may go at once when the pace has been idle (see the module docstring).
        self.burst = max(1, min(self.per_second, self.per_minute // 10))
        #: Grants a second accrued by the pacing; None (`paced=False`): the windows alone.
        self.pace = max(1, self.per_minute - self.burst) / _MINUTE if paced else None
        self._tokens = float(self.burst)
        self._refilled = clock()
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._minute: deque[float] = deque()
        self._second: deque[float] = deque()
        self._not_before = -math.inf

    async def acquire(self) -> float:
        """Wait until both windows have room and the pace allows, take a token, return the
        seconds waited."""
        start = self._clock()
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait(now)
                if wait <= _EPSILON:
                    self._second.append(now)
                    self._minute.append(now)
                    self._tokens -= 1
                    return max(0.0, now - start)
                await self._sleep(wait)

    def defer(self, seconds: float) -> None:
        """Grant no token for `seconds` from now, e.g. after Sendcloud answered 429 + `Retry-After`.

        Every lane sharing the account then holds back, not only the one that was told.
        """
        if math.isfinite(seconds) and seconds > 0:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def _wait(self, now: float) -> float:
        """Seconds until a token may be granted at `now` (≤ 0: right away)."""
        _expire(self._second, now - _SECOND)
        _expire(self._minute, now - _MINUTE)
        wait = self._not_before - now
        if self.pace is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.pace)
            self._refilled = now
            if self._tokens < 1 - _EPSILON:
                wait = max(wait, (1 - self._tokens) / self.pace)
        if len(self._second) >= self.per_second:
            wait = max(wait, self._second[-self.per_second] + _SECOND - now)
        if len(self._minute) >= self.per_minute:
            wait = max(wait, self._minute[-self.per_minute] + _MINUTE - now)
        return wait


def _expire(window: deque[float], horizon: float) -> None:
    """Drop grants at or before `horizon`: they no longer count against the window."""
    while window and window[0] <= horizon + _EPSILON:
        window.popleft()
