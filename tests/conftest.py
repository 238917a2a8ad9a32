"""Shared test fixtures: real servers on 127.0.0.1 (uvicorn in a thread), the fake Sendcloud,
and the service wired to it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import pytest
import uvicorn
from hypothesis import settings

from service.logging import configure_logging
from tests.postgres import pg_dsn, postgres  # noqa: F401 (fixtures: a real PostgreSQL server, a database per test)
from tests.stores import new_store  # noqa: F401 (the fixture: every test that asks runs on each store)

T = TypeVar("T")

# Property tests explore new examples locally; in CI (CI=true) they replay a fixed sequence, so a
# landing is never decided by a random draw. A failure prints the blob to reproduce it.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session", autouse=True)
def _json_logging() -> None:
    """The service's real logging setup, re-configurable so `capture_logs` works."""
    configure_logging("DEBUG", cache=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port, in a background thread.

    `beside`: another app served by the same thread's event loop on a port of its own
    (`beside_url`), without a lifespan — the admin app, which shares the service's state and so
    must run on its loop, as `order-bridge serve` runs it."""

    def __init__(self, app: Any, beside: Any = None) -> None:
        self.app = app
        self.sock = _bound_socket()
        self.port = self.sock.getsockname()[1]
        # keep-alive far past any test: with uvicorn's 5 s, a pooled client connection left idle
        # that long (httpx hands out the first idle one, so some sit out a burst) is closed by the
        # server just as the client reuses it — a ReadError no test is about
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=30, timeout_keep_alive=300
        )
        self.server = uvicorn.Server(config)
        self.beside: uvicorn.Server | None = None
        self.beside_sock: socket.socket | None = None
        if beside is not None:
            self.beside_sock = _bound_socket()
            self.beside = uvicorn.Server(
                uvicorn.Config(beside, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=300)
            )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        asyncio.run(self._both())

    def call(self, awaitable: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (where the app's store lives) and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout=30)

    async def _both(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.beside is None:
            await self.server.serve(sockets=[self.sock])
            return
        assert self.beside_sock is not None
        beside = asyncio.get_running_loop().create_task(self.beside.serve(sockets=[self.beside_sock]))
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.beside.should_exit = True
            await beside

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def beside_url(self) -> str:
        assert self.beside_sock is not None
        return f"http://127.0.0.1:{self.beside_sock.getsockname()[1]}"

    def __enter__(self) -> ServerThread:
        # uvicorn installs signal handlers only in the main thread; here it cannot, which is what we want.
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started or (self.beside is not None and not self.beside.started):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()
        if self.beside_sock is not None:
            self.beside_sock.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """`serve(app)` starts `app` on a free port; every server stops at the end of the test."""
    servers: list[ServerThread] = []

    def start(app: Any, beside: Any = None) -> ServerThread:
        server = ServerThread(app, beside).__enter__()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.__exit__()


# ---------------------------------------------------------------- the service against the fake

SECRETS = {"shopify": "shopify-test-secret", "woocommerce": "woocommerce-test-secret"}
#: integration id → platform, as configured for every stack
INTEGRATIONS = {7: "shopify", 8: "woocommerce", **{100 + n: "shopify" for n in range(20)}}
PUBLIC_KEY, SECRET_KEY = "test-public-key", "test-secret-key"
ADMIN_TOKEN = "test-admin-token-0123456789"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def service_toml(sendcloud_url: str, **sections: dict[str, object]) -> str:
    """A config for the service under test; `sections` override keys per table."""
    tables: dict[str, dict[str, object]] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "sendcloud": {"base_url": sendcloud_url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY},
        "buffer": {"debounce_seconds": 0.05, "max_wait_seconds": 0.5, "shutdown_timeout_seconds": 10.0},
        # the process's memory unless a test names a file: tests never write into the work tree
        "store": {"url": "memory://"},
        "logging": {"level": "DEBUG"},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    for integration_id, platform in INTEGRATIONS.items():
        lines += ["[[integrations]]", f"id = {integration_id}", f'platform = "{platform}"']
        lines.append(f"secrets = [{_toml_value(SECRETS[platform])}]")
    return "\n".join(lines) + "\n"


class Stack:
    """The fake Sendcloud and the service, both served on 127.0.0.1."""

    def __init__(self, fake: Any, fake_server: ServerThread, service_server: ServerThread) -> None:
        self.fake = fake
        self.fake_server = fake_server
        self.service_server = service_server
        self.state = service_server.app.state.order_bridge

    @property
    def url(self) -> str:
        return self.service_server.url

    @property
    def admin_url(self) -> str:
        return self.service_server.beside_url

    def call(self, awaitable: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the service's loop, e.g. `call(state.store.dead_letters())`."""
        return self.service_server.call(awaitable)

    def stop_service(self) -> None:
        self.service_server.__exit__()


@pytest.fixture
def stack(serve: Any) -> Any:
    """`stack(fake=None, **sections)`: a fake Sendcloud and the service configured against it."""
    from service.app import create_app
    from service.config import loads_config
    from service.fake_sendcloud import Account, FakeSendcloud
    from service.fake_sendcloud import create_app as create_fake

    def start(fake: FakeSendcloud | None = None, *, with_admin: bool = False, **sections: dict[str, object]) -> Stack:
        """`with_admin`: the admin app runs beside the service (`Stack.admin_url`, token
        `ADMIN_TOKEN` unless an `admin` section says otherwise)."""
        from service.admin import create_admin_app

        fake = fake or FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))})
        fake_server = serve(create_fake(fake))
        if with_admin:
            sections = {"admin": {"token": ADMIN_TOKEN}, **sections}
        config = loads_config(service_toml(fake_server.url + "/api/v3", **sections))
        app = create_app(config)
        return Stack(fake, fake_server, serve(app, create_admin_app(app.state.order_bridge) if with_admin else None))

    return start


# ---------------------------------------------------------------- the service as a real process


class ServiceProcess:
    """`order-bridge serve` in a child process, its JSON log lines collected from stdout.

    It runs in `cwd` (default: a new temporary folder), where a relative store path lands.
    """

    def __init__(
        self, config_path: Any, port: int, cwd: Any = None, admin_port: int | None = None, extra: Sequence[str] = ()
    ) -> None:
        import subprocess
        import sys
        import tempfile

        self.port = port
        self.cwd = cwd if cwd is not None else tempfile.mkdtemp(prefix="order-bridge-test-")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--config", str(config_path), "--port", str(port)]
            + (["--admin-port", str(admin_port)] if admin_port is not None else [])
            + list(extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
        )
        self.lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("service exited:\n" + b"".join(self.lines).decode(errors="replace"))
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("service not ready:\n" + b"".join(self.lines).decode(errors="replace"))

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def events(self) -> list[dict[str, Any]]:
        import json

        parsed = []
        for line in self.lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                parsed.append({"event": "<not json>", "line": line.decode(errors="replace")})
        return parsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ledger_from_metrics(url: str, *, restarted: bool = False) -> dict[str, float]:
    """The conservation ledger as an operator reads it from `/metrics`, checked to balance:
    accepted webhooks = versions accepted = sent + superseded + dead-lettered + pending. With
    `restarted` (a durable store read back by a new process) the ledger spans every process's
    life, the webhook counter only this one's: only the ledger itself must balance."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {"webhooks_accepted": 0.0}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "order_bridge_order_versions_total":
                values[sample.labels["fate"]] = sample.value
            elif sample.name == "order_bridge_orders_pending":
                values["pending"] = sample.value
            elif sample.name == "order_bridge_webhooks_total" and sample.labels["outcome"] == "accepted":
                values["webhooks_accepted"] += sample.value
    settled = values["sent"] + values["superseded"] + values["dead_lettered"] + values["pending"]
    assert values["accepted"] == settled, f"ledger does not balance: {values}"
    if not restarted:
        assert values["webhooks_accepted"] == values["accepted"], f"webhooks and versions disagree: {values}"
    return values


def fake_sendcloud_and_config(serve: Any, tmp_path: Any, **sections: dict[str, object]) -> tuple[Any, Any]:
    """A fake Sendcloud served on 127.0.0.1 (the tests' account owning `INTEGRATIONS`), and a
    config file for the service against it (`sections` as in `service_toml`; WARNING logs
    unless `logging` says otherwise). Returns (the fake, the config's path)."""
    from service.fake_sendcloud import Account, FakeSendcloud
    from service.fake_sendcloud import create_app as create_fake

    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))})
    fake_server = serve(create_fake(fake))
    config = tmp_path / "config.toml"
    tables: dict[str, dict[str, object]] = {"logging": {"level": "WARNING"}, **sections}
    config.write_text(service_toml(fake_server.url + "/api/v3", **tables))
    return fake, config
