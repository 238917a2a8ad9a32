"""`order-bridge serve --workers N`: N acceptor processes on one port, one machine's way past
one core (issue 12).

The parent takes no webhook itself: it starts N `serve` children, each binding the port with
`SO_REUSEPORT` (the kernel spreads new connections over them). On PostgreSQL all use the
database, where one of them flushes per Sendcloud account — the holder of the lease, as between
pods; on SQLite the first child owns the file and flushes, the others relay their store calls to
it (`service.store.relay`). The admin listener runs in the first child only. The parent
forwards SIGTERM, SIGINT and SIGHUP to every child; a child that dies while the parent is not
stopping is started again (after `RESTART_PAUSE` seconds), unless children keep dying within
`QUICK_DEATH` seconds of their start (`GIVE_UP_AFTER` times in a row: a database that cannot be
used, say) — then the rest are stopped and the parent exits with the last child's status.
Stopped by a signal, it waits for the children and exits by that signal, as a single `serve`
does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import structlog

__all__ = ["GIVE_UP_AFTER", "QUICK_DEATH", "RESTART_PAUSE", "supervise"]

_log = structlog.get_logger("order_bridge.workers")

RESTART_PAUSE = 1.0
QUICK_DEATH = 5.0
GIVE_UP_AFTER = 3
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(slots=True)
class _Child:
    index: int
    process: subprocess.Popen[bytes]
    started: float


def supervise(commands: Sequence[Sequence[str]], cleanup: Callable[[], None] | None = None) -> int:
    """Run a child per command (the arguments after the Python interpreter) until a signal stops
    them; returns the exit status (the signal re-raised first, when one stopped them). `cleanup`
    runs once every child has exited."""
    stopping: list[int] = []
    giving_up = False

    def signal_all(signum: int) -> None:
        for child in children.values():
            if child.process.poll() is None:
                child.process.send_signal(signum)

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGHUP and not stopping:
            stopping.append(signum)
        signal_all(signum)

    children: dict[int, _Child] = {}
    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
    quick_deaths = 0
    status = 0
    failed: int | None = None
    try:
        for index, command in enumerate(commands):
            children[index] = _start(index, command)
        _log.info("workers.started", workers=len(commands), pids=[c.process.pid for c in children.values()])
        while children:
            time.sleep(0.1)
            for index, child in list(children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del children[index]
                status = code
                if stopping or giving_up:
                    continue
                lived = time.monotonic() - child.started
                quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH else 0
                _log.error("worker.exited", worker=index, pid=child.process.pid, status=code, seconds=round(lived, 1))
                if quick_deaths >= GIVE_UP_AFTER:
                    _log.error("workers.giving_up", deaths=quick_deaths)
                    giving_up, failed = True, code
                    signal_all(signal.SIGTERM)
                    continue
                time.sleep(RESTART_PAUSE)
                if not stopping:
                    children[index] = _start(index, commands[index])
                    _log.warning("worker.restarted", worker=index, pid=children[index].process.pid)
                    if stopping:  # a signal came while it started: it was not told
                        children[index].process.send_signal(stopping[0])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if cleanup is not None:
            cleanup()
    _log.info("workers.stopped", status=failed if failed is not None else status)
    if failed is not None:  # the workers kept dying: the last one's status (2: a database it cannot use)
        return failed if failed > 0 else 1
    if stopping:  # exit by the signal, as uvicorn does for one process
        signal.signal(stopping[0], signal.SIG_DFL)
        os.kill(os.getpid(), stopping[0])
    return status if status > 0 else 1 if status < 0 else 0


def _start(index: int, command: Sequence[str]) -> _Child:
    """A worker in a process group of its own: a terminal's Ctrl-C reaches the parent only, which
    forwards it once (two SIGINTs make uvicorn skip the graceful shutdown)."""
    return _Child(index, subprocess.Popen([sys.executable, *command], process_group=0), time.monotonic())
