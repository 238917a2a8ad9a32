"""A `service.clock.Clock` the test moves by hand: timers fire when the test says, not by sleeping."""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock", "idle"]

#: the wall clock starts here (2023-11-14T22:13:20Z), the monotonic one at 0
WALL_START = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, asyncio.Event]] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if event.is_set() or (timeout is not None and timeout <= 0):
            return
        if timeout is None:
            await event.wait()
            return
        fired = asyncio.Event()
        timer = (self.now + timeout, fired)
        self._timers.append(timer)
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(fired.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            if timer in self._timers:
                self._timers.remove(timer)

    async def advance(self, seconds: float) -> None:
        """Move both clocks on by `seconds`, stopping at each timer due on the way (in deadline
        order) to fire it and let the loop run until it has nothing left to do, as real time would."""
        target = self.now + seconds
        await idle()
        while True:
            due = [timer for timer in self._timers if timer[0] <= target and not timer[1].is_set()]
            if not due:
                break
            deadline, fired = min(due, key=lambda timer: timer[0])
            self.now = max(self.now, deadline)
            fired.set()
            await idle()
        self.now = target
        await idle()


async def idle(rounds: int = 50) -> None:
    """Let every ready task run (nothing here waits on real I/O, so a few dozen rounds settle it)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
