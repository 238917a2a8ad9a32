"""The buffer's sense of time, injectable: `SystemClock` in the service, a fake one in tests.

Two clocks and a wait. `monotonic()` times the lanes' timers (debounce, backoff), immune to the
wall clock being set; `wall()` dates what is stored (receipt times, dead letters), which must
mean the same after a restart and in another process. `wait(event, timeout)` is the lane task's
only way to pass time, so a test that moves a fake clock decides exactly when a timer fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float:
        """POSIX seconds."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Return once `event` is set, or `timeout` seconds passed (never, when None)."""
        ...


class SystemClock:
    """The real clocks, and asyncio's timers."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
