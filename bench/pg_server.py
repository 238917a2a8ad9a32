"""A PostgreSQL server for the benchmarks, configured as production would be (fsync, synchronous
commits, full-page writes on), from the machine's binaries — the tests' `PostgresServer`.

    python pg_server.py start FOLDER --cpu 0   # prints the DSN of a new database; the server
                                               # and every backend it starts run on CPU 0
    python pg_server.py pids FOLDER            # the server's processes (for CPU accounting)
    python pg_server.py stop FOLDER

Only 127.0.0.1, on a free port.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import PostgresServer


def _pids(folder: Path) -> list[int]:
    """The postmaster and its children."""
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["start", "pids", "stop"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cpu", default=None, help="pin the server (and the backends it forks) to these CPUs")
    args = parser.parse_args()
    folder: Path = args.folder
    if args.action == "start":
        folder.mkdir(parents=True, exist_ok=True)
        server = PostgresServer(durable_commits=True, fsync=True, folder=folder)
        server.start()
        (folder / "server.json").write_text(json.dumps({"port": server.port}))
        if args.cpu is not None:
            for pid in _pids(folder):  # backends forked later inherit the postmaster's affinity
                subprocess.run(["taskset", "-p", "-c", args.cpu, str(pid)], capture_output=True, check=True)
        server.sql("CREATE DATABASE bench")
        print(server.dsn("bench"))
    elif args.action == "pids":
        print(" ".join(map(str, _pids(folder))))
    else:
        server = PostgresServer(folder=folder)
        server.stop("fast")
        server.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
