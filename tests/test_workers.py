"""`order-bridge serve --workers N` on the SQLite store, as real processes: the first worker
owns the file and flushes, the others relay their store calls to it (`service.store.relay`).
Both take webhooks on one port; `kill -9` of the owner or of an acceptor under load loses
nothing that was answered `accepted`, and no order reaches Sendcloud older than it was. The
same on PostgreSQL: `tests/test_replicas.py`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ServiceProcess, free_port, ledger_from_metrics
from tests.helpers import sent_versions, wait_for
from tests.processes import ORDERS, RoundRobinLoad, children_of, cpu_ticks, deliver, fake_and_config, minute_of


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def owner_of_the_file(parent: ServiceProcess) -> int:
    """The worker that hosts the store (the first)."""
    (owner,) = [pid for pid in children_of(parent.process.pid) if "--host-store-at" in command_line(pid)]
    return owner


def restarted(parent: ServiceProcess, dead: int) -> None:
    wait_for(lambda: len(children_of(parent.process.pid)) == 2 and dead not in children_of(parent.process.pid), 20)
    parent.wait_ready()


def test_two_workers_on_sqlite_share_the_file_and_lose_nothing_to_kill_9(tmp_path: Path, serve: Any) -> None:
    """Both workers take webhooks (each uses CPU), every order reaches the fake from the owner;
    under a load of out-of-order updates the owner is killed with -9 (the other answers 503
    until it is back: the file is the owner's), then the other worker; both are started again;
    then SIGTERM under the load, and a new `serve --workers 2` on the file. Every order answered
    `accepted` arrives at that version or newer, never older after newer; the ledger balances
    (read from either worker); the owner's socket, beside the file, is gone after each stop."""
    database = tmp_path / "state.db"
    fake, config = fake_and_config(
        serve, tmp_path, {"url": f"sqlite:///{database}", "synchronous": "normal"}, sendcloud={"timeout_seconds": 2.0}
    )
    relay_socket = Path(str(database) + ".sock")
    parent = ServiceProcess(config, free_port(), extra=["--workers", "2"])
    load: RoundRobinLoad | None = None
    try:
        parent.wait_ready()
        wait_for(lambda: len(children_of(parent.process.pid)) == 2, timeout=20)
        workers = children_of(parent.process.pid)
        owner = owner_of_the_file(parent)
        assert command_line(owner)[command_line(owner).index("--host-store-at") + 1] == str(relay_socket)
        assert relay_socket.stat().st_mode & 0o777 == 0o600
        before = {pid: cpu_ticks(pid) for pid in workers}
        for n in range(300):  # a new connection each: the kernel spreads them over the workers
            assert deliver(parent.url, 8000 + n).json() == {"status": "accepted"}
        used = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
        assert all(ticks > 10 for ticks in used.values()), used
        wait_for(lambda: all(fake.order(7, str(8000 + n)) is not None for n in range(300)), timeout=30)

        load = RoundRobinLoad([parent.url], seed=31).start()
        time.sleep(2.0)
        assert set(load.answers) <= {"accepted:200", "ignored:200"}, load.answers  # 503s only while the owner is down
        os.kill(owner, signal.SIGKILL)
        restarted(parent, owner)
        time.sleep(1.0)  # the other worker has connected again
        unavailable = load.answers["store_unavailable:503"]
        (acceptor,) = [pid for pid in children_of(parent.process.pid) if pid != owner_of_the_file(parent)]
        os.kill(acceptor, signal.SIGKILL)
        restarted(parent, acceptor)
        time.sleep(2.0)
        assert load.answers["store_unavailable:503"] == unavailable, load.answers
        for _ in range(4):  # a scrape reaches either worker: both show the owner's ledger, balanced
            ledger_from_metrics(parent.url, restarted=True)
        code = parent.stop(signal.SIGTERM)  # under the load
        time.sleep(0.5)
        load.stop()
    finally:
        if load is not None:
            load.stop()
        if parent.process.poll() is None:
            parent.stop(signal.SIGTERM)
    assert code == -signal.SIGTERM and not relay_socket.exists()
    events = [e["event"] for e in parent.events()]
    assert events.count("worker.restarted") == 2 and "store.owner_lost" in events

    again = ServiceProcess(config, free_port(), extra=["--workers", "2"])
    try:
        again.wait_ready()

        def arrived(order_id: str, minute: int) -> bool:
            final = minute_of(fake.order(7, order_id))
            # or a newer version whose request a kill cut off after the owner had committed it
            cut_off = load.unanswered.get(order_id, set())
            return final == minute or (final is not None and final > minute and final in cut_off)

        wait_for(lambda: all(arrived(i, m) for i, m in load.accepted.items()), timeout=60)
        ledger_from_metrics(again.url, restarted=True)
    finally:
        assert again.stop(signal.SIGTERM) == -signal.SIGTERM
    assert not relay_socket.exists()
    expected = {
        "accepted:200",
        "ignored:200",
        "duplicate:200",
        "no answer",
        "store_unavailable:503",
        "shutting_down:503",
    }
    assert set(load.answers) <= expected, load.answers
    assert load.answers["accepted:200"] > 200 and len(load.accepted) == ORDERS, load.answers
    older = {key: v for key, v in sent_versions(fake).items() if v != sorted(v)}
    assert older == {}, older
    assert fake.count_429() == 0 and fake.still_processing == 0


def test_workers_need_a_store_they_share(tmp_path: Path, serve: Any) -> None:
    _, config = fake_and_config(serve, tmp_path, {"url": "memory://"})
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--workers needs a store the workers share" in result.stderr
