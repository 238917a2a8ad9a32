"""The Sendcloud batch client: one `POST /api/v3/orders` per call, classified for the buffer.

`send()` classifies every answer into a `service.sender.SendResult`; what the buffer does with
each outcome is listed there (DESIGN §6).
"""

from __future__ import annotations

import email.utils
import importlib.metadata
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import msgspec

from adapters.sendcloud import EncodedOrder, Order, encode_orders
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.sender import Rejection, SendOutcome, SendResult

__all__ = ["MAX_RETRY_AFTER", "SendcloudClient", "parse_retry_after"]


# ---------------------------------------------------------------- the client

#: Sendcloud's `Retry-After` is honoured up to this many seconds; anything longer is taken as
#: this, so a broken header cannot park a lane for days.
MAX_RETRY_AFTER = 3600.0
#: At most this many batch-level errors are named in `SendResult.detail`.
_NAMED_ERRORS = 5
#: `/data/attributes/[N]/…`, the pointer of an error in the N-th order of the batch (also
#: accepted without the brackets, the style Sendcloud uses for nested indexes).
_ORDER_POINTER = re.compile(r"^/data/attributes/(?:\[([0-9]+)\]|([0-9]+))(?:/|\Z)")
_STILL_PROCESSING = "still processing"
#: Sendcloud's batch-level error texts known to carry no order data: only these are quoted in
#: `SendResult.detail`; any other text stays out (it may quote values from the orders).
_SAFE_TEXTS = (
    re.compile(r"^Orders list should have at most [0-9]+ items, not [0-9]+\Z"),
    re.compile(r"^Wrong request format, expected list of objects\Z"),
)
_DELAY_SECONDS = re.compile(r"^[0-9]{1,10}(?:\.[0-9]+)?\Z")


def _user_agent() -> str:
    try:
        return f"order-bridge/{importlib.metadata.version('order-bridge')}"
    except importlib.metadata.PackageNotFoundError:
        return "order-bridge/0+unknown"


class _Created(msgspec.Struct):
    """One entry of a 2xx body's `data`: Sendcloud's id (int, or str) for one `order_id`."""

    order_id: str
    id: int | str


class _CreatedBody(msgspec.Struct):
    data: list[_Created]


_CREATED = msgspec.json.Decoder(_CreatedBody)


@dataclass(frozen=True, slots=True)
class _Error:
    """One JSON:API error of a 400, read leniently (every field may be missing or mistyped)."""

    code: str
    detail: str
    pointer: str | None
    header: str | None
    parameter: str | None

    def index(self, size: int) -> int | None:
        """The index of the order this error names, if it names one of a batch of `size`."""
        match = _ORDER_POINTER.match(self.pointer or "")
        if match is None:
            return None
        index = int(match.group(1) or match.group(2))
        return index if index < size else None

    @property
    def still_processing(self) -> bool:
        return self.pointer == "/data" or _STILL_PROCESSING in self.detail.lower()

    def describe(self) -> str:
        """Code and location, plus the text only when it is a known order-free message."""
        if self.pointer is not None:
            where = f"at {self.pointer[:100]}"
        elif self.header is not None:
            where = f"in header {self.header[:100]}"
        elif self.parameter is not None:
            where = f"in parameter {self.parameter[:100]}"
        else:
            where = "for the whole request"
        text = f" ({self.detail})" if any(p.match(self.detail) for p in _SAFE_TEXTS) else ""
        return f"{self.code or 'error'} {where}{text}"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _errors(body: bytes) -> list[_Error] | None:
    """The JSON:API errors of a body, or None when it is not JSON or has no error list."""
    try:
        doc = msgspec.json.decode(body)
    except (ValueError, RecursionError):  # msgspec.DecodeError, UnicodeDecodeError, deep nesting
        return None
    raw = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(raw, dict):  # the spec types `errors` as array | object
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        return None
    errors = []
    for item in raw:
        error = item if isinstance(item, dict) else {}
        source = error.get("source")
        source = source if isinstance(source, dict) else {}
        errors.append(
            _Error(
                code=_str(error.get("code")) or "",
                detail=_str(error.get("detail")) or "",
                pointer=_str(source.get("pointer")),
                header=_str(source.get("header")),
                parameter=_str(source.get("parameter")),
            )
        )
    return errors


def _body_kind(response: httpx.Response) -> str:
    """What came back, without its content: "text/html, 162 bytes"."""
    content_type = response.headers.get("content-type", "no content type").split(";")[0].strip()
    return f"{content_type[:60]}, {len(response.content)} bytes"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP-date), None if absent or garbage.

    A date in the past gives 0; anything above `MAX_RETRY_AFTER` gives `MAX_RETRY_AFTER`.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.match(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, but the source zone is unknown"
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return min(seconds, MAX_RETRY_AFTER)


class SendcloudClient:
    """Sends one batch per `send()` to `POST {base_url}/orders` and classifies the answer.

    One pooled `httpx.AsyncClient` per instance; close it with `aclose()` (or `async with`).
    Every request goes out on a token of `limiter`, the account's shared `RateLimiter`: the
    one `reserve()` took for it, or one `send()` takes itself.
    `timeout` applies to each phase of a request (connect, write, each read, pool wait).
    `send()` never raises for anything Sendcloud or the network does: every HTTP status,
    timeout and transport error becomes a `SendResult` (see the module docstring).
    """

    def __init__(
        self,
        *,
        base_url: str,
        public_key: str,
        secret_key: str,
        partner_id: str = "",
        timeout: float,
        limiter: RateLimiter,
        metrics: Metrics,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = httpx.URL(base_url.rstrip("/") + "/orders")
        if self._url.scheme not in ("http", "https") or not self._url.host:
            raise ValueError("Sendcloud base_url must be an http(s) URL")
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": _user_agent(),
        }
        if partner_id:
            headers["Sendcloud-Partner-Id"] = partner_id
        self._timeout = timeout
        self._limiter = limiter
        self._metrics = metrics
        self._http = httpx.AsyncClient(
            auth=httpx.BasicAuth(public_key, secret_key),
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> SendcloudClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def set_credentials(self, public_key: str, secret_key: str, partner_id: str = "") -> None:
        """Use other credentials from the next request on (a config reload); held orders keep waiting."""
        self._http.auth = httpx.BasicAuth(public_key, secret_key)
        if partner_id:
            self._http.headers["Sendcloud-Partner-Id"] = partner_id
        else:
            self._http.headers.pop("Sendcloud-Partner-Id", None)

    async def reserve(self) -> None:
        """Wait for a token of the account's rate limit, for a `send(..., reserved=True)`.

        The buffer reserves *before* it takes a batch, so a lane held back by the limit keeps
        absorbing orders and sends one bigger batch instead of more requests.
        """
        await self._limiter.acquire()

    async def send(
        self,
        orders: Sequence[Order | EncodedOrder],
        *,
        reserved: bool = False,
        still_mine: Callable[[], bool] | None = None,
    ) -> SendResult:
        """Upsert `orders` (one batch) at Sendcloud and say what became of them.

        `reserved=True`: the caller already took this request's token with `reserve()`.
        `still_mine`: asked after the body is encoded, just before the request goes out (a
        flusher whose lease ran out meanwhile — paused, say — sends nothing: `not_flusher`).
        """
        if not orders:
            raise ValueError("send() needs at least one order")
        body = encode_orders(orders)
        if not reserved:
            await self._limiter.acquire()
        if still_mine is not None and not still_mine():
            return SendResult(SendOutcome.RETRY, None, "not_flusher", detail="this process lost the flusher lease")
        started = time.perf_counter()
        try:
            response = await self._http.post(self._url, content=body)
        except httpx.RequestError as exc:  # timeouts are RequestErrors too
            timeout = isinstance(exc, httpx.TimeoutException)
            cause = "timeout" if timeout else "connection_error"
            self._observe(cause, started)
            what = f"no answer from Sendcloud within {self._timeout:g} s" if timeout else "could not talk to Sendcloud"
            return SendResult(SendOutcome.RETRY, None, cause, detail=f"{what} ({type(exc).__name__})")
        self._observe(str(response.status_code), started)
        return self._classify(orders, response)

    def _observe(self, status: str, started: float) -> None:
        self._metrics.sendcloud_requests.labels(status=status).inc()
        self._metrics.sendcloud_duration.observe(time.perf_counter() - started)

    def _classify(self, orders: Sequence[Order | EncodedOrder], response: httpx.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return _accepted(orders, response)
        if status == 400:
            return _bad_request(orders, response)
        if status in (401, 403):
            cause = "unauthorized" if status == 401 else "forbidden"
            hint = "the public and secret key" if status == 401 else "the key's permissions and the partner id"
            return SendResult(
                SendOutcome.MISCONFIGURED,
                status,
                cause,
                detail=f"Sendcloud refused the request ({status}): check {hint}",
            )
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            if retry_after is not None:
                self._limiter.defer(retry_after)
            said = f"Retry-After {retry_after:g} s" if retry_after is not None else "no usable Retry-After"
            return SendResult(
                SendOutcome.RETRY,
                status,
                "rate_limited",
                retry_after=retry_after,
                detail=f"Sendcloud's rate limit was hit (429, {said})",
            )
        if status == 409:
            cause, detail = "conflict", "Sendcloud answered 409 Conflict: an order of the batch is busy"
        elif status >= 500:
            cause, detail = str(status), f"Sendcloud failed with {status} ({_body_kind(response)})"
        else:
            cause, detail = str(status), f"unexpected status {status} from Sendcloud ({_body_kind(response)})"
        return SendResult(SendOutcome.RETRY, status, cause, retry_after=retry_after, detail=detail)


def _accepted(orders: Sequence[Order | EncodedOrder], response: httpx.Response) -> SendResult:
    """A 2xx: Sendcloud's id for every order, or RETRY when the body does not account for all."""
    status = response.status_code
    try:
        created = _CREATED.decode(response.content)
    except (ValueError, RecursionError):  # DecodeError and ValidationError are ValueErrors
        return SendResult(
            SendOutcome.RETRY,
            status,
            "unexpected_response",
            detail=f"{status} from Sendcloud without the expected `data` list ({_body_kind(response)})",
        )
    ids = {entry.order_id: entry.id for entry in created.data}
    missing = [index for index, order in enumerate(orders) if order.order_id not in ids]
    if missing:
        named = ", ".join(map(str, missing[:_NAMED_ERRORS])) + (", …" if len(missing) > _NAMED_ERRORS else "")
        return SendResult(
            SendOutcome.RETRY,
            status,
            "unexpected_response",
            detail=f"{status} from Sendcloud does not list {len(missing)} of {len(orders)} orders (indexes {named})",
        )
    accepted = {order.order_id: ids[order.order_id] for order in orders}
    return SendResult(
        SendOutcome.ACCEPTED, status, str(status), accepted=accepted, detail=f"Sendcloud accepted {len(orders)} orders"
    )


def _bad_request(orders: Sequence[Order | EncodedOrder], response: httpx.Response) -> SendResult:
    """A 400: some orders refused (REJECTED), a busy order (RETRY) or a bad request (MISCONFIGURED)."""
    errors = _errors(response.content)
    if errors is None:
        return SendResult(
            SendOutcome.MISCONFIGURED,
            400,
            "batch_invalid",
            detail=f"400 from Sendcloud without a JSON:API error list ({_body_kind(response)})",
        )
    rejected: dict[int, list[Rejection]] = {}
    batch_level: list[_Error] = []
    for error in errors:
        index = error.index(len(orders))
        if index is not None:
            rejected.setdefault(index, []).append(Rejection(error.pointer or "", error.code, error.detail))
        elif not error.still_processing:
            batch_level.append(error)
    if rejected:
        count = sum(map(len, rejected.values()))
        others = f"; {len(errors) - count} other error(s) for the batch" if len(errors) > count else ""
        return SendResult(
            SendOutcome.REJECTED,
            400,
            "rejected",
            rejected=dict(sorted(rejected.items())),
            detail=f"Sendcloud refused {len(rejected)} of {len(orders)} orders ({count} error(s)){others}",
        )
    if not batch_level:
        return SendResult(
            SendOutcome.RETRY,
            400,
            "still_processing",
            detail="Sendcloud is still processing a previous request for an order of this batch (400)",
        )
    named = "; ".join(error.describe() for error in batch_level[:_NAMED_ERRORS])
    more = f"; and {len(batch_level) - _NAMED_ERRORS} more" if len(batch_level) > _NAMED_ERRORS else ""
    return SendResult(
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
        detail=f"Sendcloud refused the batch as a whole (400): {named}{more}",
    )
