"""The HTTP service (DESIGN §3): the webhook route, health, readiness and metrics.

`POST /webhooks/{platform}/{integration_id}` runs the steps of DESIGN §1 in order — guard,
verify, dedupe, filter, translate, buffer, answer — and answers within milliseconds; Sendcloud
is only ever called by the buffer's flush tasks. Every answer to a client is JSON; nothing a
client sends can cause a 500 (an unexpected failure answers 503, which Shopify retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import httpx
import msgspec
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from adapters import ADAPTERS, Adapter, Reason, TranslationError, get_adapter
from service.buffer import Buffer, BufferClosed, BufferFull, BufferSettings
from service.config import Config, ConfigError, IntegrationConfig, load_config
from service.deadletters import record_dead_letters
from service.fake_sendcloud import FakeSendcloud
from service.fake_sendcloud import create_app as create_fake_app
from service.lease import account_key
from service.metrics import Metrics
from service.openapi import document_json
from service.ratelimit import RateLimiter
from service.sendcloud import SendcloudClient
from service.store import AddResult, DeadLetter, HistoryEvent, Store, StoreSettings, StoreUnavailable
from service.store.factory import open_store
from service.store.relay import RelayStore, StoreHost
from service.store.sqlite import SqliteStore

__all__ = ["AppState", "create_app"]

_log = structlog.get_logger("order_bridge.webhook")

#: seconds a shop is asked to wait before retrying a 503
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True, slots=True)
class _Integration:
    config: IntegrationConfig
    adapter: Adapter
    secrets: tuple[str, ...]


@dataclass(slots=True)
class AppState:
    """Everything a request needs, built once by `create_app`."""

    config: Config
    metrics: Metrics
    buffer: Buffer
    store: Store
    client: SendcloudClient
    integrations: Mapping[int, _Integration]
    sandbox: FakeSendcloud | None = None
    shutting_down: bool = False
    started: bool = False
    #: the file `reload()` re-reads (SIGHUP), when the config came from one
    config_path: str | None = None

    def begin_shutdown(self) -> None:
        """From now on `/readyz` answers 503 and webhooks get 503 (DESIGN §8)."""
        if not self.shutting_down:
            self.shutting_down = True
            _log.info("shutdown.begin", pending=self.buffer.pending())

    def reload(self) -> None:
        """Re-read the config file (SIGHUP) without losing a buffered order.

        Applied at once: the integrations (secrets, platforms, new and removed ones), the accepted
        currencies, the Sendcloud credentials and partner id (held orders then go with the new
        ones) and the admin tokens. Anything else — server, buffer, logging, `base_url`, where
        the admin listener is — needs a restart, which is logged. An invalid file changes
        nothing and logs one error.
        """
        if self.config_path is None:
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            _log.error("config.reload_failed", error=str(exc))
            return
        old = self.config
        needs_restart = [
            name for name in ("server", "buffer", "store", "logging") if getattr(new, name) != getattr(old, name)
        ]
        if new.sendcloud.base_url != old.sendcloud.base_url:
            needs_restart.append("sendcloud.base_url")
        # the admin tokens apply at once (rotation); where the listener is needs a restart
        if _admin_address(new) != _admin_address(old):
            needs_restart.append("admin")
        self.integrations = _integrations(new)
        credentials = ("public_key", "secret_key", "partner_id")
        if self.sandbox is None and any(getattr(new.sendcloud, k) != getattr(old.sendcloud, k) for k in credentials):
            self.client.set_credentials(new.sendcloud.public_key, new.sendcloud.secret_key, new.sendcloud.partner_id)
            self.buffer.flush(retry_now=True)  # orders held by a 401 go now, not after their backoff
        self.config = new
        _log.info("config.reloaded", integrations=sorted(self.integrations), restart_needed_for=needs_restart)


def _admin_address(config: Config) -> tuple[str, int] | None:
    return None if config.admin is None else (config.admin.host, config.admin.port)


# ---------------------------------------------------------------- answers


def _json(status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers)


_ACCEPTED = Response(b'{"status":"accepted"}', media_type="application/json")
_DUPLICATE = Response(b'{"status":"duplicate"}', media_type="application/json")
_DEAD_LETTERED = Response(b'{"status":"dead_lettered"}', media_type="application/json")


def _ignored(reason: str) -> Response:
    return _json(200, {"status": "ignored", "reason": reason})


def _error(status: int, code: str, detail: str, *, retry: bool = False) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else None
    return _json(status, {"error": code, "detail": detail}, headers)


class _TooLarge(Exception):
    pass


async def _read_body(headers: Mapping[str, str], receive: Receive, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to exceed `limit` bytes (never read whole)."""
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers as a plain dict: ASGI names are lower-case already; of a repeated
    header the first counts, as with Starlette's `Headers.get`."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}


def _is_json(content_type: str | None, body: bytes) -> bool:
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        return media == "application/json" or media.endswith("+json")
    return body.lstrip()[:1] in (b"{", b"[")


# ---------------------------------------------------------------- the webhook


class _Webhook:
    """The webhook route as a plain ASGI app under Starlette's router (`Route` treats an
    instance as one): it reads the few headers and the body it needs straight from ASGI rather
    than through a `Request`. This route takes every order; the others are ordinary endpoints."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.order_bridge
        path_params = scope["path_params"]
        # The path is the client's: only a known platform name may become a log field or a
        # metric label (an arbitrary one would grow the metrics without bound).
        platform = path_params["platform"] if path_params["platform"] in ADAPTERS else "unknown"
        started = state.buffer.clock.monotonic()
        outcome = "error"
        try:
            response, outcome = await _handle(state, scope, receive, platform)
        except Exception:  # a bug: the shop retries a 503, so nothing is lost
            _log.exception("webhook.error", platform=platform)
            response = _error(503, "internal_error", "The order could not be taken; retry later.", retry=True)
        state.metrics.webhook_answered(platform, outcome).inc()
        state.metrics.webhook_duration.observe(state.buffer.clock.monotonic() - started)
        await response(scope, receive, send)


async def _handle(state: AppState, scope: Scope, receive: Receive, platform: str) -> tuple[Response, str]:
    raw_id = scope["path_params"]["integration_id"]
    # isascii(): str.isdigit() also accepts a superscript three (int() refuses it) and an
    # Arabic-Indic seven (int() reads it as 7).
    known = raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19
    integration = state.integrations.get(int(raw_id)) if known else None
    # One dict of common fields instead of bound loggers: bind() copies a logger per call.
    ids: dict[str, object] = {
        "platform": platform,
        "integration_id": integration.config.id if integration else raw_id[:20],
    }

    if integration is None or integration.config.platform != platform:
        _log.info("webhook.rejected", **ids, status=404, error="unknown_integration")
        return _error(404, "unknown_integration", "No such integration for this platform."), "not_found"
    if state.shutting_down:
        _log.info("webhook.rejected", **ids, status=503, error="shutting_down")
        return _error(503, "shutting_down", "The service is restarting; retry later.", retry=True), "unavailable"
    headers = _headers(scope)
    try:
        body = await _read_body(headers, receive, state.config.server.max_body_bytes)
    except _TooLarge:
        _log.info("webhook.rejected", **ids, status=413, error="payload_too_large")
        limit = state.config.server.max_body_bytes
        return _error(413, "payload_too_large", f"The body is over {limit} bytes."), "too_large"
    except ClientDisconnect:
        return _error(400, "client_disconnected", "The body did not arrive whole."), "bad_request"

    adapter = integration.adapter
    if adapter.is_ping(headers, body):
        _log.info("webhook.ignored", **ids, reason="ping")
        return _ignored("ping"), "ignored"
    if not _is_json(headers.get("content-type"), body):
        _log.info("webhook.rejected", **ids, status=415, error="unsupported_media_type")
        return _error(415, "unsupported_media_type", "The body must be JSON (application/json)."), "unsupported"
    if not adapter.verify(headers, body, integration.secrets):
        _log.warning("webhook.rejected", **ids, status=401, error="invalid_signature")
        return _error(401, "invalid_signature", "The signature header is missing or does not match."), "unauthorized"

    delivery_id = adapter.delivery_id(headers)
    ids["delivery_id"] = delivery_id
    now = state.buffer.clock.wall()
    if delivery_id is not None and state.store.seen_delivery(integration.config.id, delivery_id, now):
        _log.info("webhook.duplicate", **ids)
        _duplicate_in_history(state, integration, body, delivery_id, adapter.topic(headers), now)
        return _DUPLICATE, "duplicate"
    topic = adapter.topic(headers)
    if topic is None:
        _log.info("webhook.rejected", **ids, status=400, error="missing_topic")
        return _error(400, "missing_topic", "The topic header is missing."), "bad_request"
    if topic not in adapter.order_topics:
        _log.info("webhook.ignored", **ids, reason="topic", topic=topic)
        _remember(state, integration, delivery_id, now)
        return _ignored("topic"), "ignored"

    try:
        order = adapter.translate(body, integration.config.id)
    except TranslationError as exc:
        try:
            return await _untranslatable(state, integration, exc, ids, body, delivery_id, now)
        except StoreUnavailable as unavailable:
            return _store_unavailable(ids, unavailable, None), "unavailable"
    try:
        added = await state.buffer.add(
            integration.config.id, platform, order, delivery_id=delivery_id, received_at=now, topic=topic
        )
    except BufferFull:
        _log.warning("webhook.rejected", **ids, status=503, error="buffer_full", order_id=order.order_id)
        return _error(503, "buffer_full", "Too many orders are waiting; retry later.", retry=True), "unavailable"
    except BufferClosed:
        _log.info("webhook.rejected", **ids, status=503, error="shutting_down", order_id=order.order_id)
        return _error(503, "shutting_down", "The service is restarting; retry later.", retry=True), "unavailable"
    except StoreUnavailable as exc:
        return _store_unavailable(ids, exc, order.order_id), "unavailable"
    if added is AddResult.DUPLICATE:  # taken by another replica sharing the store
        _log.info("webhook.duplicate", **ids)
        return _DUPLICATE, "duplicate"
    if added is AddResult.STALE:
        _log.info("order.stale", **ids, order_id=order.order_id, topic=topic)
        return _ignored("stale"), "ignored"
    _log.info("order.buffered", **ids, order_id=order.order_id, topic=topic, coalesced=added is AddResult.COALESCED)
    return _ACCEPTED, "accepted"


def _duplicate_in_history(
    state: AppState, integration: _Integration, body: bytes, delivery_id: str, topic: str | None, now: float
) -> None:
    """A retried delivery goes into its order's history; which order it is takes a translation
    (only duplicates pay for it; one that does not translate has no order to file it under)."""
    try:
        order = integration.adapter.translate(body, integration.config.id)
    except TranslationError:
        return
    step = HistoryEvent(
        *(integration.config.id, order.order_id, now, "received"),
        order_number=order.order_number,
        outcome="duplicate",
        delivery_id=delivery_id,
        topic=topic,
    )
    state.store.record_history([step])


def _store_unavailable(ids: dict[str, object], exc: StoreUnavailable, order_id: str | None) -> Response:
    """The store could not commit: nothing was kept, so the shop must send it again."""
    _log.error("webhook.rejected", **ids, status=503, error="store_unavailable", order_id=order_id, cause=str(exc))
    return _error(503, "store_unavailable", "The order could not be stored; retry later.", retry=True)


def _remember(state: AppState, integration: _Integration, delivery_id: str | None, now: float) -> None:
    """Take the delivery id of a webhook that did not reach the buffer (which takes its own)."""
    if delivery_id is not None:
        state.store.remember_delivery(integration.config.id, delivery_id, now)


async def _untranslatable(
    state: AppState,
    integration: _Integration,
    exc: TranslationError,
    ids: dict[str, object],
    body: bytes,
    delivery_id: str | None,
    now: float,
) -> tuple[Response, str]:
    if exc.reason is Reason.MALFORMED_BODY:
        _log.info("webhook.rejected", **ids, status=400, error=str(exc.reason), detail=exc.detail)
        return _error(400, str(exc.reason), exc.detail), "bad_request"
    _remember(state, integration, delivery_id, now)
    if exc.reason is Reason.NO_SHIPPABLE_ITEMS:
        _log.info("webhook.ignored", **ids, reason=str(exc.reason))
        return _ignored(str(exc.reason)), "ignored"
    letter = DeadLetter(
        integration_id=integration.config.id,
        platform=integration.config.platform,
        order_id=exc.order_id,
        reason=str(exc.reason),
        detail=exc.detail,
        delivery_id=delivery_id,
        at=now,
        webhook=body,
        order_number=exc.order_number,
    )
    kept = await state.store.add_dead_letters([letter])
    record_dead_letters(kept.kept, kept.evicted, state.metrics, capacity=state.config.buffer.dead_letter_capacity)
    return _DEAD_LETTERED, "dead_lettered"


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON like every other answer."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else None
    return _json(status, {"error": code, "detail": HTTPStatus(status).phrase + "."}, headers)


# ---------------------------------------------------------------- health, readiness, metrics


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def openapi_document(request: Request) -> Response:
    return Response(document_json(), media_type="application/json")


async def readyz(request: Request) -> Response:
    state: AppState = request.app.state.order_bridge
    reasons = []
    if state.shutting_down:
        reasons.append("shutting_down")
    if not state.started:
        reasons.append("not_started")
    elif not state.buffer.running and not state.shutting_down:
        reasons.append("flusher_stopped")
    if state.buffer.above_high_water():
        reasons.append("buffer_near_full")
    if not state.store.available():
        reasons.append("store_unavailable")
    if reasons:
        return _json(503, {"status": "not_ready", "reasons": reasons})
    return _json(200, {"status": "ready", "pending": state.buffer.pending()})


async def prometheus(request: Request) -> Response:
    state: AppState = request.app.state.order_bridge
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- assembly


def _on_sighup(callback: Callable[[], None]) -> bool:
    """Run `callback` on SIGHUP; False where signals cannot be handled (not the main thread)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, callback)
    except (ValueError, RuntimeError, NotImplementedError):
        return False
    return True


def _integrations(config: Config) -> dict[int, _Integration]:
    currencies = config.sendcloud.currency_set
    return {i.id: _Integration(i, get_adapter(i.platform, currencies), tuple(i.secrets)) for i in config.integrations}


def create_app(
    config: Config,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    config_path: str | None = None,
    host_store_at: str | None = None,
    relay_store_to: str | None = None,
) -> Starlette:
    """The service for `config`. `transport` replaces the network (tests); with `base_url =
    "sandbox"` the built-in fake Sendcloud answers in-process and is mounted at `/sandbox`.

    `serve --workers N` on SQLite (`service.store.relay`): the first worker owns the file and
    answers the others' store calls on the Unix socket `host_store_at`; the others keep no store
    of their own and relay to it (`relay_store_to`)."""
    metrics = Metrics()
    sandbox: FakeSendcloud | None = None
    routes: list[BaseRoute] = [
        Route("/webhooks/{platform}/{integration_id}", _Webhook(), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
    ]
    sc = config.sendcloud
    base_url = sc.base_url
    public_key, secret_key = sc.public_key, sc.secret_key
    if base_url == "sandbox":
        sandbox = FakeSendcloud.sandbox()
        fake_app = create_fake_app(sandbox)
        routes.append(Mount("/sandbox", app=fake_app))
        transport = transport or httpx.ASGITransport(app=fake_app)
        base_url, public_key, secret_key = "http://sandbox/api/v3", "sandbox", "sandbox"
    limiter = RateLimiter(requests_per_minute=sc.requests_per_minute, burst_per_second=sc.burst_per_second)
    client = SendcloudClient(
        base_url=base_url,
        public_key=public_key,
        secret_key=secret_key,
        partner_id=sc.partner_id,
        timeout=sc.timeout_seconds,
        limiter=limiter,
        metrics=metrics,
        transport=transport,
    )
    bc = config.buffer
    settings = BufferSettings(
        debounce_seconds=bc.debounce_seconds,
        max_wait_seconds=bc.max_wait_seconds,
        max_batch=bc.max_batch,
        max_pending=bc.max_pending,
    )
    kept = StoreSettings(
        remember_sent=bc.remember_sent,
        compress_above=settings.compress_above,
        dead_letter_capacity=bc.dead_letter_capacity,
        dead_letter_retention=config.store.dead_letter_retention_days * 86_400.0,
        history_retention=config.store.history_days * 86_400.0,
        dedupe_ttl=bc.dedupe_ttl_seconds,
        dedupe_max_entries=bc.dedupe_max_entries,
    )
    store: Store
    if relay_store_to is not None:
        store = RelayStore(relay_store_to, kept)
    else:
        store = open_store(
            config.store.url,
            synchronous=config.store.synchronous,
            settings=kept,
            account=account_key(public_key),
            password_file=config.store.password_file,
        )
    buffer = Buffer(
        settings,
        client,
        store,
        metrics,
        dead_letter_capacity=bc.dead_letter_capacity,
        recovery_hold=sc.timeout_seconds,
    )
    host: StoreHost | None = None
    if host_store_at is not None:
        if not isinstance(store, SqliteStore):
            raise ValueError("only a SQLite store is hosted for other workers")
        host = StoreHost(store, host_store_at, buffer.admit)
    integrations = _integrations(config)
    state = AppState(
        config=config,
        metrics=metrics,
        buffer=buffer,
        store=store,
        client=client,
        integrations=integrations,
        sandbox=sandbox,
        config_path=config_path,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.connect()
        await buffer.start()
        if host is not None:
            await host.start()
        state.started = True
        reloads = config_path is not None and _on_sighup(state.reload)
        _log.info(
            "service.started",
            integrations=sorted(integrations),
            sandbox=sandbox is not None,
            debounce_seconds=bc.debounce_seconds,
            reload_on_sighup=reloads,
        )
        try:
            yield
        finally:
            if reloads:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            state.begin_shutdown()
            await buffer.close(bc.shutdown_timeout_seconds)
            await client.aclose()
            if host is not None:  # the other workers' calls were answered until now
                await host.close()
            await store.close()
            _log.info("service.stopped", dead_letters=store.dead_letter_count())

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.order_bridge = state
    return app
