"""The `order-bridge` command (also `python -m service`).

- `serve`          run the service (`--config FILE` or `ORDER_BRIDGE_CONFIG`)
- `check-config`   validate a config file without starting
- `translate`      one webhook body → the Sendcloud order JSON
- `send-sample`    post a correctly signed sample webhook to a running service
- `fake-sendcloud` run the built-in Sendcloud simulator on its own port
- `admin`          the admin API from a terminal (lanes, dead letters, replay, an order's history)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from adapters import ADAPTERS, DEFAULT_CURRENCIES, TranslationError, get_adapter
from adapters.sendcloud import ENCODER

__all__ = ["main"]


def _currencies(value: str) -> frozenset[str]:
    codes = frozenset(code.strip().upper() for code in value.split(",") if code.strip())
    if not codes or any(len(code) != 3 or not code.isalpha() or not code.isascii() for code in codes):
        raise argparse.ArgumentTypeError("expected comma-separated ISO 4217 codes, e.g. EUR,GBP,USD")
    return codes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="order-bridge", description="Shop order webhooks → Sendcloud orders.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--config", help="config file (default: $ORDER_BRIDGE_CONFIG)")
    serve.add_argument("--host", help="overrides [server] host")
    serve.add_argument("--port", type=int, help="overrides [server] port")
    serve.add_argument("--admin-port", type=int, help="overrides [admin] port")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="acceptor processes on the port (SO_REUSEPORT), on a PostgreSQL or SQLite store",
    )
    # set by `--workers` for its children: bind with SO_REUSEPORT; no admin listener; on SQLite,
    # the first worker answers the others' store calls on a Unix socket, which they relay to
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--no-admin", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--host-store-at", help=argparse.SUPPRESS)
    serve.add_argument("--relay-store-to", help=argparse.SUPPRESS)

    check = commands.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file", help="the TOML config")

    translate = commands.add_parser("translate", help="print the Sendcloud order for one webhook body")
    translate.add_argument("--platform", required=True, choices=sorted(ADAPTERS))
    translate.add_argument("--integration-id", required=True, type=int, help="Sendcloud integration id")
    translate.add_argument(
        "--currencies",
        type=_currencies,
        default=DEFAULT_CURRENCIES,
        help="currencies Sendcloud accepts (default: EUR,GBP,USD)",
    )
    translate.add_argument("file", type=Path, help="the webhook body, as the shop sends it ('-' for stdin)")

    sample = commands.add_parser("send-sample", help="post a signed sample order webhook to a running service")
    sample.add_argument("--platform", required=True, choices=sorted(ADAPTERS))
    sample.add_argument("--secret", help="webhook secret (default: examples/sandbox.toml's secret for the platform)")
    sample.add_argument("--file", type=Path, help="body to send (default: the platform's bundled sample order)")
    sample.add_argument("--topic", help="topic header (default: the platform's order-creation topic)")
    sample.add_argument("url", help="e.g. http://127.0.0.1:8080/webhooks/<platform>/1")

    fake = commands.add_parser("fake-sendcloud", help="run the Sendcloud simulator (public key and secret: sandbox)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8081)

    from service.admin.client import add_parser as add_admin_parser

    add_admin_parser(commands)
    return parser


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"order-bridge: {message}\n")
    return code


# ---------------------------------------------------------------- commands


def _check_config(args: argparse.Namespace) -> int:
    from service.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return _fail(f"{args.file}: {exc}", 1)
    integrations = ", ".join(f"{i.id} ({i.platform})" for i in config.integrations)
    sys.stdout.write(f"{args.file}: ok; integrations: {integrations}; sendcloud: {config.sendcloud.base_url}\n")
    return _report_store(config.store.url)


def _report_store(url: str) -> int:
    """What the store holds, read without changing it: a newcomer's first look after a crash."""
    from service.store import StoreOpenError
    from service.store.factory import is_postgres, sqlite_path
    from service.store.postgres.store import redacted
    from service.store.sqlite import summarize

    if is_postgres(url):
        sys.stdout.write(
            f"store: {redacted(url)} (PostgreSQL, shared by the replicas; not contacted by check-config)\n"
        )
        return 0
    path = sqlite_path(url)
    if path is None:
        sys.stdout.write(f"store: {url} (the process's memory: nothing survives a restart)\n")
        return 0
    if not path.exists():
        sys.stdout.write(f"store: {path} (not created yet: the first `serve` creates it)\n")
        return 0
    try:
        held = summarize(path)
    except StoreOpenError as exc:
        return _fail(str(exc), 1)
    lanes = ", ".join(str(lane) for lane in held.lanes) or "none"
    sys.stdout.write(
        f"store: {path} (schema {held.schema_version}): {held.pending} pending, {held.in_flight} in flight "
        f"in {held.batches_in_flight} batches, {held.dead_letters} dead letters, "
        f"{held.sent_remembered} sent versions remembered; integrations with orders: {lanes}\n"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    from service.app import create_app
    from service.config import ConfigError, load_config
    from service.logging import configure_logging
    from service.store import StoreOpenError

    path = args.config or os.environ.get("ORDER_BRIDGE_CONFIG")
    if not path:
        return _fail("no config: pass --config FILE or set ORDER_BRIDGE_CONFIG")
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail(f"{path}: {exc}")
    configure_logging(config.logging.level)
    if args.workers != 1:
        return _serve_workers(args, str(path), config)
    try:
        app = create_app(
            config, config_path=str(path), host_store_at=args.host_store_at, relay_store_to=args.relay_store_to
        )
    except StoreOpenError as exc:
        return _fail(str(exc))
    state = app.state.order_bridge

    admin: Any = None
    if config.admin is not None and not args.no_admin:
        try:
            admin, admin_socket = _admin_server(state, args.admin_port)
        except OSError as exc:
            where = f"{config.admin.host}:{args.admin_port or config.admin.port}"
            return _fail(f"the admin listener cannot listen on {where}: {exc.strerror or exc}")

    class Server(uvicorn.Server):
        """uvicorn, but SIGTERM first turns readiness and new webhooks to 503 (DESIGN §8), and
        the admin listener stops taking requests with it."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state.begin_shutdown()
            if admin is not None:
                admin.should_exit = True
            super().handle_exit(sig, frame)

    server = Server(
        uvicorn.Config(
            app,
            host=args.host or config.server.host,
            port=args.port or config.server.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            server_header=False,
            # No client address is used (never logged): uvicorn's X-Forwarded-For rewriting
            # would cost every request something for nothing.
            proxy_headers=False,
        )
    )
    # Everything built so far (modules, the app) lives as long as the process: move it out of
    # the garbage collector's sight, so a full collection walks only what requests create
    # (40 ms pauses at full load without this; docs/benchmarks.md).
    gc.collect()
    gc.freeze()

    sockets = [_reuse_port_socket(server.config.host, server.config.port)] if args.reuse_port else None

    async def both() -> None:
        """The admin listener lives as long as the webhook server, which owns the signals."""
        if admin is None:
            await server.serve(sockets=sockets)
            return
        listening = asyncio.get_running_loop().create_task(admin.serve(sockets=[admin_socket]), name="admin")
        try:
            await server.serve(sockets=sockets)
        finally:
            admin.should_exit = True
            await listening

    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        # the store is reached before any socket takes a webhook (a database that cannot be
        # used stops start-up with one line), on the loop that will use it
        try:
            runner.run(state.store.connect())
        except StoreOpenError as exc:
            return _fail(str(exc))
        try:
            runner.run(both())
        except KeyboardInterrupt:  # Ctrl-C: uvicorn shut down cleanly, then re-raised SIGINT
            return 130
    return 0


def _serve_workers(args: argparse.Namespace, path: str, config: Any) -> int:
    """`serve --workers N`: N children on the port, supervised (`service.workers`). On PostgreSQL
    every worker uses the database; on SQLite the first owns the file and the others relay their
    store calls to it over a Unix socket beside the file (`service.store.relay`)."""
    import shutil

    from service.store.factory import MEMORY, is_postgres, sqlite_path
    from service.store.relay import socket_path
    from service.workers import supervise

    if args.workers < 1:
        return _fail("--workers must be 1 or more")
    if config.store.url == MEMORY:
        return _fail('--workers needs a store the workers share: [store] url = "sqlite:///…" or "postgresql://…"')
    command = ["-m", "service", "serve", "--config", path, "--reuse-port"]
    if args.host:
        command += ["--host", args.host]
    if args.port:
        command += ["--port", str(args.port)]
    # the admin listener (when configured) in the first worker only
    first = command + (["--admin-port", str(args.admin_port)] if args.admin_port else [])
    others = [*command, "--no-admin"]
    if is_postgres(config.store.url):
        return supervise([first] + [others] * (args.workers - 1))
    store_file = sqlite_path(config.store.url)
    if store_file is None:
        return _fail(f"no store for that URL: {config.store.url}")
    relay, folder = socket_path(store_file)

    def cleanup() -> None:  # the owner removes its socket, unless it was killed
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(relay)

    return supervise(
        [[*first, "--host-store-at", relay]] + [[*others, "--relay-store-to", relay]] * (args.workers - 1),
        cleanup=cleanup,
    )


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """The webhook port, bound with SO_REUSEPORT: every worker binds it, the kernel spreads the
    connections over them."""
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listening.bind((host, port))
    return listening


def _admin_server(state: Any, port: int | None) -> tuple[Any, socket.socket]:
    """The admin listener's uvicorn server (`[admin]`, DESIGN §9) and its socket, bound now so
    a port in use stops start-up before any webhook is taken (OSError). It leaves the signals
    to the webhook server, and stops with it."""
    import uvicorn

    from service.admin import create_admin_app

    admin_config = state.config.admin
    app = create_admin_app(state)

    class AdminServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    host, port = admin_config.host, port or admin_config.port
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
    except OSError:
        listening.close()
        raise
    tokens = app.state.admin_tokens
    if admin_config.token == "" and state.config.sendcloud.is_sandbox:
        # The sandbox's made-up token, for the person who ran `make run` (never logged).
        sys.stderr.write(f"order-bridge: admin console on http://{host}:{port}/  token: {tokens.generated}\n")
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        # no proxy in front of it: an X-Forwarded-Proto from 127.0.0.1 must not change the scheme
        proxy_headers=False,
    )
    return AdminServer(config), listening


def _translate(args: argparse.Namespace) -> int:
    body = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    adapter = get_adapter(args.platform, args.currencies)
    try:
        order = adapter.translate(body, args.integration_id)
    except TranslationError as exc:
        error = msgspec.json.encode({"error": str(exc.reason), "detail": exc.detail})
        sys.stderr.write(error.decode() + "\n")
        return 1
    sys.stdout.write(msgspec.json.format(ENCODER.encode(order), indent=2).decode() + "\n")
    return 0


def _send_sample(args: argparse.Namespace) -> int:
    import httpx

    adapter = get_adapter(args.platform)
    body = args.file.read_bytes() if args.file else adapter.sample()
    headers = adapter.sign(body, args.secret or adapter.sample_secret, topic=args.topic)
    try:
        response = httpx.post(args.url, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        return _fail(f"could not reach {args.url}: {exc}", 1)
    sys.stdout.write(f"{response.status_code} {response.text}\n")
    return 0 if response.status_code == 200 else 1


def _fake_sendcloud(args: argparse.Namespace) -> int:
    import uvicorn

    from service.fake_sendcloud import FakeSendcloud, create_app
    from service.logging import configure_logging

    configure_logging("INFO")
    uvicorn.run(create_app(FakeSendcloud.sandbox()), host=args.host, port=args.port, log_config=None)
    return 0


def _admin(args: argparse.Namespace) -> int:
    from service.admin.client import run

    return run(args)


_COMMANDS = {
    "admin": _admin,
    "serve": _serve,
    "check-config": _check_config,
    "translate": _translate,
    "send-sample": _send_sample,
    "fake-sendcloud": _fake_sendcloud,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _COMMANDS[args.command](args)
