"""`service.ratelimit`: Sendcloud's per-account limit, on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.ratelimit import RateLimiter


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeTime:
    """A clock that only moves when someone sleeps; `sleep` yields to the loop before time moves on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)  # let every task that is ready run first, at the current time
        self.now += seconds


def _limiter(fake: FakeTime, **kwargs: Any) -> RateLimiter:
    return RateLimiter(clock=fake.clock, sleep=fake.sleep, **kwargs)


async def _grants(limiter: RateLimiter, fake: FakeTime, n: int) -> list[float]:
    """Acquire `n` tokens one after the other; the clock time of each grant."""
    times = []
    for _ in range(n):
        await limiter.acquire()
        times.append(fake.now)
    return times


def _max_in_window(times: list[float], width: float) -> int:
    """The most grants in any half-open window [t, t + width)."""
    return max(sum(1 for u in times if t - 1e-5 <= u < t + width - 1e-5) for t in times)


@pytest.mark.anyio
async def test_a_burst_goes_out_at_once_then_waits_for_the_second_to_pass() -> None:
    """With burst 15 and the default headroom, 14 tokens are immediate; the 15th waits a second
    (the windows alone: pacing off)."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=15, paced=False)
    waited = [await limiter.acquire() for _ in range(14)]
    assert waited == [0.0] * 14
    assert fake.sleeps == []
    assert await limiter.acquire() == pytest.approx(1.0)
    times = await _grants(limiter, fake, 40)
    assert _max_in_window([1000.0] * 14 + [1001.0, *times], 1.0) <= 14


@pytest.mark.anyio
async def test_the_per_minute_cap_holds_over_any_sixty_seconds() -> None:
    """With 100/min and the default margin, 90 tokens fit in a minute; the 91st waits for the
    first to age out (the windows alone: pacing off)."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=15, paced=False)
    times = await _grants(limiter, fake, 90)
    assert times[-1] < 1000.0 + 7  # 90 tokens in bursts of 14 a second
    waited = await limiter.acquire()
    assert fake.now == pytest.approx(1060.0)
    assert waited == pytest.approx(60.0 - (times[-1] - 1000.0))
    times += [fake.now, *await _grants(limiter, fake, 200)]
    assert _max_in_window(times, 60.0) == 90
    assert _max_in_window(times, 1.0) == 14
    # The full rate is kept: 290 tokens need three minutes and a bit, not more.
    assert times[-1] - times[0] < 3 * 60 + 7


@pytest.mark.anyio
async def test_a_token_bucket_would_double_the_first_minute_this_does_not() -> None:
    """Within the first 60 s no more than 90 tokens are granted, however long callers queue
    (the windows alone: pacing off)."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=15, paced=False)
    times = await _grants(limiter, fake, 181)
    assert sum(1 for t in times if t < 1059.999) == 90


@pytest.mark.anyio
async def test_concurrent_waiters_are_served_in_arrival_order() -> None:
    """Tasks queued on the limiter get their tokens first come, first served, latecomers too."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=3, burst_headroom=0, paced=False)
    served: list[int] = []

    async def lane(number: int) -> None:
        await limiter.acquire()
        served.append(number)

    first = [asyncio.create_task(lane(n)) for n in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    late = asyncio.create_task(lane(10))
    await asyncio.gather(*first, late)
    assert served == list(range(11))
    assert fake.now == pytest.approx(1003.0)  # 11 tokens at 3 a second: t = 0, 1, 2, 3


@pytest.mark.anyio
async def test_the_wait_counts_the_time_spent_queued_behind_others() -> None:
    """`acquire()` returns the seconds from the call to the grant, lock wait included."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=2, burst_headroom=0, paced=False)
    waits = await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert waits == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0])


@pytest.mark.anyio
async def test_paced_grants_never_stall_on_the_minute_window() -> None:
    """Defaults (100/min, 15/s): 9 tokens at once, then one every 60/81 s, for ever. Demand of
    2 requests a second (ten lanes flushing every 5 s) used to get 90 grants in 45 s and then
    none for 15 s; paced, no caller waits longer than one interval, and the windows hold."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=15)
    assert limiter.burst == 9 and limiter.pace == pytest.approx(81 / 60)
    times = []
    for k in range(360):  # 180 s of demand at 2 a second, each asked for at its arrival
        fake.now = max(fake.now, 1000.0 + k / 2)
        await limiter.acquire()
        times.append(fake.now)
    assert times[:9] == [1000.0 + k / 2 for k in range(9)]  # the burst allowance: nobody waits
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 60 / 81 + 1e-6
    assert _max_in_window(times, 60.0) <= limiter.per_minute
    assert _max_in_window(times, 1.0) <= limiter.per_second
    # Sustained, once the allowance is spent: exactly 81 a minute, not fewer.
    assert gaps[-100:] == pytest.approx([60 / 81] * 100, rel=1e-6)


@pytest.mark.anyio
async def test_an_idle_pace_refills_only_up_to_the_burst() -> None:
    """After an hour idle, 9 tokens go at once and the tenth waits one interval."""
    fake = FakeTime()
    limiter = _limiter(fake, requests_per_minute=100, burst_per_second=15)
    await _grants(limiter, fake, 30)
    fake.now += 3600
    start = fake.now
    times = await _grants(limiter, fake, 10)
    assert times[:9] == [start] * 9
    assert times[9] == pytest.approx(start + 60 / 81)


@pytest.mark.parametrize(
    ("kwargs", "per_minute", "per_second"),
    [
        ({"requests_per_minute": 100, "burst_per_second": 15}, 90, 14),
        ({"requests_per_minute": 100, "burst_per_second": 15, "margin": 1.0, "burst_headroom": 0}, 100, 15),
        ({"requests_per_minute": 1000, "burst_per_second": 50, "margin": 0.5, "burst_headroom": 5}, 500, 45),
        ({"requests_per_minute": 1, "burst_per_second": 1}, 1, 1),
        ({"requests_per_minute": 10, "burst_per_second": 2}, 9, 1),
    ],
)
def test_the_margin_keeps_below_the_configured_limits(kwargs: dict[str, Any], per_minute: int, per_second: int) -> None:
    """The windows hold 90 % of the minute limit and one less than the burst, never less than 1."""
    limiter = RateLimiter(**kwargs)
    assert (limiter.per_minute, limiter.per_second) == (per_minute, per_second)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests_per_minute": 0},
        {"burst_per_second": 0},
        {"margin": 0.0},
        {"margin": 1.5},
        {"burst_headroom": -1},
    ],
)
def test_nonsense_limits_are_refused(kwargs: dict[str, Any]) -> None:
    """A limit below 1, a margin outside (0, 1] or a negative headroom is a configuration error."""
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)


@pytest.mark.anyio
async def test_defer_holds_every_caller_back() -> None:
    """After `defer(5)` (a 429 with Retry-After) no token is granted for 5 s; nonsense deferrals are ignored."""
    fake = FakeTime()
    limiter = _limiter(fake)
    await limiter.acquire()
    limiter.defer(float("nan"))
    limiter.defer(-3)
    assert await limiter.acquire() == 0.0
    limiter.defer(5)
    limiter.defer(2)  # a shorter deferral does not shorten the longer one
    assert await limiter.acquire() == pytest.approx(5.0)


@pytest.mark.anyio
async def test_the_default_clock_and_sleep_work() -> None:
    """Without injected time the limiter runs on the event loop: a free token costs nothing."""
    limiter = RateLimiter()
    assert await limiter.acquire() < 0.1


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.3, 0.7, 2.0, 13.0, 61.0]), min_size=1, max_size=250),
    burst=st.integers(1, 20),
    per_minute=st.integers(1, 120),
)
def test_no_window_ever_holds_more_than_allowed(gaps: list[float], burst: int, per_minute: int) -> None:
    """Whatever the arrival pattern, no 1 s window exceeds the burst and no 60 s window the minute limit."""
    fake = FakeTime()
    limiter = RateLimiter(requests_per_minute=per_minute, burst_per_second=burst, clock=fake.clock, sleep=fake.sleep)

    async def run() -> list[float]:
        times = []
        for gap in gaps:
            fake.now += gap
            await limiter.acquire()
            times.append(fake.now)
        return times

    times = asyncio.run(run())
    assert _max_in_window(times, 1.0) <= limiter.per_second
    assert _max_in_window(times, 60.0) <= limiter.per_minute
