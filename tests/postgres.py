"""A real PostgreSQL server for the tests, started from the machine's binaries (`initdb`,
`pg_ctl`) into a temporary folder, listening on 127.0.0.1 on a free port and on a Unix socket
in that folder. `make postgres` installs Debian's `postgresql` where the binaries are missing;
no test is skipped for want of a database.

`initdb` refuses to run as root: as root, the folder is given to the `postgres` user and the
binaries run as that user (`runuser`). The server runs with `fsync = off` — these tests are
about what the service does, not about PostgreSQL's own durability.

Fixtures: `postgres` (one server per test session) and `pg_dsn` (a new, empty database per
test: `postgresql://postgres@127.0.0.1:<port>/<name>`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "pg_dsn", "postgres"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if installed:
        return installed[-1]
    pytest.fail(f"PostgreSQL's {name} is not installed: `make postgres` installs Debian's postgresql")


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; `start()`, `stop()`, `dsn(database)`."""

    def __init__(self, *, durable_commits: bool = False, fsync: bool = False, folder: Path | None = None) -> None:
        #: False (the tests' default, faster): a commit returns before its WAL is written, so
        #: stopping the server with `immediate` loses the last ones — as a crash of the database
        #: would with `synchronous_commit = off`
        self.durable_commits = durable_commits
        #: False (the tests' default): a crash of the machine may lose commits (never of the server)
        self.fsync = fsync
        self.folder = folder if folder is not None else Path(tempfile.mkdtemp(prefix="order-bridge-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self._as_user, *command], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(
                f"{command[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                + (log.read_text(errors="replace") if log.exists() else "")
            )

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                _binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync={'on' if self.fsync else 'off'} "
            f"-c full_page_writes={'on' if self.fsync else 'off'} -c max_connections=200"
        ) + ("" if self.durable_commits else " -c synchronous_commit=off")
        self._run(
            _binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with `psql` (as the tests' administrator), return its output."""
        result = subprocess.run(
            [
                _binary("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn(database),
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    def login_role(self, role: str, password: str) -> None:
        """A role that must log in with its password over TCP (the rest of the server trusts)."""
        self.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.sql("SELECT pg_reload_conf()")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            server.remove()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> Iterator[str]:
    """A new database for this test (dropped after it)."""
    name = "test_" + uuid.uuid4().hex[:12]
    postgres.sql(f"CREATE DATABASE {name}")
    yield postgres.dsn(name)
    postgres.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
