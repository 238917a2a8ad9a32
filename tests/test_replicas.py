"""`order-bridge serve` on PostgreSQL, as real processes on a real server (`tests/postgres.py`).

One process first: the store at `[store] url = "postgresql://…"` takes orders to Sendcloud, with
the password from a file, and never shows it; a database that cannot be used stops start-up with
one line. Then several replicas on one database (issue 12's proofs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import (
    SECRETS,
    ServiceProcess,
    free_port,
    ledger_from_metrics,
)
from tests.helpers import SHOPIFY_SAMPLE, sent_versions, shopify_headers, wait_for
from tests.postgres import PostgresServer
from tests.processes import ORDERS, RoundRobinLoad, children_of, cpu_ticks, deliver, fake_and_config, minute_of

ROOT = Path(__file__).parent.parent
SHOPIFY = SHOPIFY_SAMPLE


def with_password(postgres: PostgresServer, database: str, tmp_path: Path) -> tuple[str, Path]:
    """A role that logs in with a password, owning `database`; the URL without the password,
    and the file holding it."""
    role, password = "bridge_" + database[-6:], "s3cret-pg-Passw0rd"
    postgres.login_role(role, password)
    postgres.sql(f"ALTER DATABASE {database} OWNER TO {role}")
    postgres.sql(f"ALTER SCHEMA public OWNER TO {role}", database=database)
    secret = tmp_path / "pg-password"
    secret.write_text(password + "\n")
    return f"postgresql://{role}@127.0.0.1:{postgres.port}/{database}", secret


def test_serve_on_postgresql_takes_orders_to_sendcloud(
    tmp_path: Path, serve: Any, pg_dsn: str, postgres: PostgresServer
) -> None:
    """A process on a PostgreSQL store (password in a file, as a mounted Secret) answers
    `accepted` only once the order is in the database, sends it, and keeps a duplicate out; the
    password is in no log line and not in `check-config`'s report."""
    database = pg_dsn.rsplit("/", 1)[1]
    url, secret = with_password(postgres, database, tmp_path)
    fake, config = fake_and_config(serve, tmp_path, {"url": url, "password_file": str(secret)})
    report = subprocess.run(
        [sys.executable, "-m", "service", "check-config", str(config)], capture_output=True, text=True, check=True
    )
    assert "PostgreSQL" in report.stdout and "s3cret" not in report.stdout
    service = ServiceProcess(config, free_port())
    try:
        service.wait_ready()
        body = json.dumps({**SHOPIFY, "id": 5001}).encode()
        headers = shopify_headers(SECRETS["shopify"], body, delivery="delivery-5001")
        first = httpx.post(service.url + "/webhooks/shopify/7", content=body, headers=headers)
        assert first.json() == {"status": "accepted"}
        assert postgres.sql("SELECT count(*) FROM orders", database=database) == "1"
        again = httpx.post(service.url + "/webhooks/shopify/7", content=body, headers=headers)
        assert again.json() == {"status": "duplicate"}
        wait_for(lambda: fake.order(7, "5001") is not None)
    finally:
        assert service.stop(signal.SIGTERM) == -signal.SIGTERM
    log = b"".join(service.lines).decode()
    assert "s3cret" not in log
    events = [e["event"] for e in service.events()]
    assert "lease.acquired" in events and "lease.released" in events
    assert postgres.sql("SELECT expires_at FROM flusher_leases", database=database) == "0"
    assert len(fake.requests) == 1

    secret.write_text("not-the-password\n")
    refused = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "password authentication failed" in refused.stderr, refused.stderr


def test_a_database_that_cannot_be_used_stops_start_up_with_one_line(tmp_path: Path, serve: Any) -> None:
    """No server at that port: `serve` exits 2 before taking a webhook, naming the store with
    its password hidden."""
    url = f"postgresql://bridge:hunter2-password@127.0.0.1:{free_port()}/nowhere"
    _, config = fake_and_config(serve, tmp_path, {"url": url})
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "postgresql://bridge:***@127.0.0.1" in result.stderr and "cannot be used" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr


# ---------------------------------------------------------------- three replicas on one database


def lease_holder_pid(postgres: PostgresServer, database: str) -> int | None:
    """The pid of the replica holding an unexpired flusher lease (holders are `host:pid:random`)."""
    row = postgres.sql(
        "SELECT holder FROM flusher_leases WHERE expires_at > extract(epoch FROM clock_timestamp())", database=database
    )
    return int(row.split(":")[1]) if row else None


def new_leader_within(postgres: PostgresServer, database: str, than: int, seconds: float) -> tuple[int, float]:
    """Waits for a replica other than pid `than` to hold the lease; returns it and the wait."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        pid = lease_holder_pid(postgres, database)
        if pid is not None and pid != than:
            return pid, time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"no new flusher within {seconds} s")


def test_three_replicas_lose_nothing_when_flushers_are_killed(
    tmp_path: Path, serve: Any, pg_dsn: str, postgres: PostgresServer
) -> None:
    """Three `serve` processes on one database behind a round-robin of signed, out-of-order
    updates: `kill -9` the flusher mid-load, then the replica that took over, and restart both.
    A new flusher holds the lease within 15 s each time (10 s lease, 3 s heartbeat); in the end
    every order answered `accepted` is at Sendcloud at its newest accepted version, no request
    carried an older version of an order than one already sent, Sendcloud answered no 429 and
    no "still processing" (two flushers at once), and the shared ledger balances."""
    database = pg_dsn.rsplit("/", 1)[1]
    fake, config = fake_and_config(
        serve, tmp_path, {"url": pg_dsn}, sendcloud={"timeout_seconds": 2.0}, logging={"level": "WARNING"}
    )
    ports = [free_port() for _ in range(3)]
    replicas = [ServiceProcess(config, port) for port in ports]
    load: RoundRobinLoad | None = None
    try:
        for replica in replicas:
            replica.wait_ready()
        first = lease_holder_pid(postgres, database)
        assert first in {replica.process.pid for replica in replicas}
        load = RoundRobinLoad([replica.url for replica in replicas], seed=20261203).start()
        failovers = []
        for _ in range(2):
            time.sleep(2.0)
            leader = lease_holder_pid(postgres, database)
            assert leader is not None
            index = next(i for i, r in enumerate(replicas) if r.process.pid == leader)
            replicas[index].stop(signal.SIGKILL)
            _, waited = new_leader_within(postgres, database, than=leader, seconds=20.0)
            failovers.append(waited)
            replicas[index] = ServiceProcess(config, ports[index])
            replicas[index].wait_ready()
        time.sleep(2.0)
        load.stop()

        def delivered() -> bool:
            return all(minute_of(fake.order(7, order_id)) is not None for order_id in load.accepted)

        wait_for(delivered, timeout=60)
        wait_for(lambda: ledger_from_metrics(replicas[0].url, restarted=True).get("pending", 1) == 0, timeout=30)
        ledger = ledger_from_metrics(replicas[0].url, restarted=True)
    finally:
        if load is not None:
            load.stop()
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop(signal.SIGTERM)

    def arrived_as_accepted(order_id: str, minute: int) -> bool:
        final = minute_of(fake.order(7, order_id))
        # or a newer version whose request a kill cut off after the replica had committed it
        return final == minute or (
            final is not None and final > minute and final in load.unanswered.get(order_id, set())
        )

    lost = [order_id for order_id, minute in load.accepted.items() if not arrived_as_accepted(order_id, minute)]
    sent = sent_versions(fake)
    older = {key: versions for key, versions in sent.items() if versions != sorted(versions)}
    print(
        f"\nthree replicas, two flusher kills: failovers {[round(w, 1) for w in failovers]} s; answers "
        f"{dict(sorted(load.answers.items()))}; {len(load.accepted)} orders accepted, {len(lost)} lost; "
        f"{len(fake.requests)} requests, 429s {fake.count_429()}, still processing {fake.still_processing}; "
        f"ledger {ledger}"
    )
    assert all(waited <= 15.0 for waited in failovers), failovers
    assert sum(load.answers.values()) > 300 and len(load.accepted) == ORDERS
    assert lost == [], lost
    assert older == {}, older
    assert fake.count_429() == 0 and fake.still_processing == 0
    assert not any(key.startswith("store_unavailable") or key.endswith(":503") for key in load.answers), load.answers


def test_a_replica_that_loses_its_database_answers_503_and_never_accepted(tmp_path: Path, serve: Any) -> None:
    """The database goes away (stopped hard): every webhook is answered 503 `store_unavailable`
    with Retry-After, and `/readyz` says not ready; when it is back, webhooks are accepted again and
    only the ones answered `accepted` reach Sendcloud."""
    server = PostgresServer(durable_commits=True)  # a commit survives the database stopping hard
    server.start()
    try:
        fake, config = fake_and_config(serve, tmp_path, {"url": server.dsn()})
        service = ServiceProcess(config, free_port())
        try:
            service.wait_ready()
            assert deliver(service.url, 7001).json() == {"status": "accepted"}
            server.stop("immediate")
            refused = [deliver(service.url, 7100 + n) for n in range(5)]
            assert {(r.status_code, r.json()["error"]) for r in refused} == {(503, "store_unavailable")}
            assert all(r.headers["retry-after"] for r in refused)
            wait_for(lambda: httpx.get(service.url + "/readyz").status_code == 503, timeout=10)
            server.start()

            def accepted_again() -> bool:
                return bool(deliver(service.url, 7200).json() == {"status": "accepted"})

            wait_for(accepted_again, timeout=30)
            wait_for(lambda: fake.order(7, "7200") is not None and fake.order(7, "7001") is not None)
            assert all(fake.order(7, str(7100 + n)) is None for n in range(5))
        finally:
            service.stop(signal.SIGTERM)
    finally:
        server.stop("immediate")
        server.remove()


def test_a_paused_flusher_sends_nothing_after_it_lost_the_lease(
    tmp_path: Path, serve: Any, pg_dsn: str, postgres: PostgresServer
) -> None:
    """SIGSTOP the flusher past its lease while orders keep coming to both replicas; the other
    takes over and sends them. SIGCONT: the old flusher finds it lost the lease and sends
    nothing from then on (not a batch logged, not a request), and nothing is lost."""
    database = pg_dsn.rsplit("/", 1)[1]
    fake, config = fake_and_config(serve, tmp_path, {"url": pg_dsn}, sendcloud={"timeout_seconds": 2.0})
    replicas = [ServiceProcess(config, free_port()) for _ in range(2)]
    load: RoundRobinLoad | None = None
    try:
        for replica in replicas:
            replica.wait_ready()
        leader_pid = lease_holder_pid(postgres, database)
        (old,) = [r for r in replicas if r.process.pid == leader_pid]
        (other,) = [r for r in replicas if r is not old]
        load = RoundRobinLoad([other.url], seed=7).start()
        time.sleep(1.5)
        old.process.send_signal(signal.SIGSTOP)
        new_leader_within(postgres, database, than=old.process.pid, seconds=20.0)
        time.sleep(2.0)
        requests_before = len(fake.requests)
        resumed_at = datetime.now(UTC)
        old.process.send_signal(signal.SIGCONT)
        time.sleep(4.0)
        load.stop()
        wait_for(lambda: all(minute_of(fake.order(7, i)) == m for i, m in load.accepted.items()), timeout=60)
    finally:
        if load is not None:
            load.stop()
        for replica in replicas:
            replica.process.send_signal(signal.SIGCONT)
            replica.stop(signal.SIGTERM)
    after = [e for e in old.events() if "timestamp" in e and datetime.fromisoformat(e["timestamp"]) > resumed_at]
    sending = [e["event"] for e in after if e["event"] in ("batch.flush", "batch.accepted", "order.accepted")]
    assert sending == [], sending
    assert {"lease.expired", "lease.lost"} & {e["event"] for e in after}, [e["event"] for e in after]
    assert len(fake.requests) > requests_before  # the new flusher kept sending
    sent = sent_versions(fake)
    assert {key: v for key, v in sent.items() if v != sorted(v)} == {}
    assert fake.count_429() == 0 and fake.still_processing == 0


# ---------------------------------------------------------------- several workers on one machine


def test_two_workers_share_the_port_and_one_of_them_flushes(
    tmp_path: Path, serve: Any, pg_dsn: str, postgres: PostgresServer
) -> None:
    """`serve --workers 2`: two children take webhooks on one port (each does work), one holds
    the flusher lease; a child killed with -9 is started again and its orders still go; SIGTERM
    stops them all, and the parent exits by it."""
    database = pg_dsn.rsplit("/", 1)[1]
    fake, config = fake_and_config(serve, tmp_path, {"url": pg_dsn}, sendcloud={"timeout_seconds": 2.0})
    parent = ServiceProcess(config, free_port(), extra=["--workers", "2"])
    try:
        parent.wait_ready()
        wait_for(lambda: len(children_of(parent.process.pid)) == 2, timeout=20)
        workers = children_of(parent.process.pid)
        before = {pid: cpu_ticks(pid) for pid in workers}
        for n in range(300):  # a new connection each: the kernel spreads them over the workers
            assert deliver(parent.url, 8000 + n).json() == {"status": "accepted"}
        used = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
        assert all(ticks > 10 for ticks in used.values()), used
        wait_for(lambda: all(fake.order(7, str(8000 + n)) is not None for n in range(300)), timeout=30)
        assert lease_holder_pid(postgres, database) in workers

        flusher = lease_holder_pid(postgres, database)
        assert flusher is not None
        os.kill(flusher, signal.SIGKILL)
        wait_for(
            lambda: len(children_of(parent.process.pid)) == 2 and flusher not in children_of(parent.process.pid),
            timeout=20,
        )
        parent.wait_ready()
        for n in range(20):
            assert deliver(parent.url, 9000 + n).json() == {"status": "accepted"}
        wait_for(lambda: all(fake.order(7, str(9000 + n)) is not None for n in range(20)), timeout=30)
    finally:
        code = parent.stop(signal.SIGTERM)
    assert code == -signal.SIGTERM
    events = [e["event"] for e in parent.events()]
    assert events.count("workers.started") == 1 and "worker.restarted" in events and "workers.stopped" in events
    assert fake.count_429() == 0 and fake.still_processing == 0


def test_a_rolling_restart_of_every_replica_under_load_answers_no_503(
    tmp_path: Path, serve: Any, pg_dsn: str, postgres: PostgresServer
) -> None:
    """Three replicas, each in turn taken out of the rotation (as the preStop pause takes a pod
    out of the Service's endpoints), stopped with SIGTERM, started again and put back: the load
    never meets a 503 or a refused connection, and every order answered `accepted` arrives at
    its newest version — the flusher's lease passes on at each stop."""
    fake, config = fake_and_config(serve, tmp_path, {"url": pg_dsn}, sendcloud={"timeout_seconds": 2.0})
    ports = [free_port() for _ in range(3)]
    replicas = [ServiceProcess(config, port) for port in ports]
    load: RoundRobinLoad | None = None
    codes = []
    try:
        for replica in replicas:
            replica.wait_ready()
        load = RoundRobinLoad([replica.url for replica in replicas], seed=99).start()
        for index in range(3):
            time.sleep(1.0)
            load.urls.remove(replicas[index].url)
            time.sleep(0.3)  # the requests already sent to it are answered
            codes.append(replicas[index].stop(signal.SIGTERM))
            replicas[index] = ServiceProcess(config, ports[index])
            replicas[index].wait_ready()
            load.urls.append(replicas[index].url)
        time.sleep(1.0)
        load.stop()
        wait_for(lambda: all(minute_of(fake.order(7, i)) == m for i, m in load.accepted.items()), timeout=60)
    finally:
        if load is not None:
            load.stop()
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop(signal.SIGTERM)
    assert codes == [-signal.SIGTERM] * 3
    assert set(load.answers) <= {"accepted:200", "ignored:200", "duplicate:200"}, load.answers
    assert sum(load.answers.values()) > 300 and len(load.accepted) == ORDERS
    sent = sent_versions(fake)
    assert {key: v for key, v in sent.items() if v != sorted(v)} == {}
    assert fake.count_429() == 0 and fake.still_processing == 0


def test_workers_that_keep_dying_at_start_stop_the_supervisor_with_their_status(tmp_path: Path, serve: Any) -> None:
    """No database at that address: every worker exits 2 at start; after three quick deaths the
    supervisor stops the rest and exits 2 too (not by a signal: a service manager sees a
    failure), naming the store with its password hidden."""
    url = f"postgresql://bridge:hunter2-password@127.0.0.1:{free_port()}/nowhere"
    _, config = fake_and_config(serve, tmp_path, {"url": url})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--config",
            str(config),
            "--port",
            str(free_port()),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "workers.giving_up" in result.stdout and "hunter2" not in result.stdout + result.stderr
