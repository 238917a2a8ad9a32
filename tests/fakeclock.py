"""A `service.clock.Clock` the test moves by hand: timers fire when the test says, not by sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["FakeClock", "idle"]

#: the wall clock starts here (2023-11-14T22:13:20Z), the monotonic one at 0
WALL_START = 1_700_000_000.0


class FakeClock:
    """`busy`, when given, says whether real I/O is still in progress (a store's commit in its
    writer thread): `idle()` then also waits for it — real time passes, the fake clock does not."""

    def __init__(self, busy: Callable[[], bool] | None = None) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, asyncio.Event]] = []
        self._busy = busy

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
        await self.idle()
        while True:
            due = [timer for timer in self._timers if timer[0] <= target and not timer[1].is_set()]
            if not due:
                break
            deadline, fired = min(due, key=lambda timer: timer[0])
            self.now = max(self.now, deadline)
            fired.set()
            await self.idle()
        self.now = target
        await self.idle()

    async def idle(self) -> None:
        """Let every ready task run, and every write in progress finish, until nothing moves."""
        await idle()
        if self._busy is None:
            return
        quiet = 0
        for _ in range(10_000):  # bounded: 10 s of real time at most
            # Quiet three checks in a row: a commit answered from its thread wakes a task that
            # may queue the next write only after a check saw none in progress.
            quiet = quiet + 1 if not self._busy() else 0
            if quiet == 3:
                return
            await asyncio.sleep(0.001)
            await idle()
        raise AssertionError("the store is still writing after 10 s")


async def idle(rounds: int = 50) -> None:
    """Let every ready task run (nothing here waits on real I/O, so a few dozen rounds settle it)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
