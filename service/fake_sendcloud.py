"""A strict, in-memory fake of Sendcloud's Orders API (v3), for the tests and the `sandbox` mode.

`FakeSendcloud` holds the state and the behaviour and can be called without HTTP
(`await fake.handle_post(body, authorization=...)`); `create_app(fake)` serves it as a Starlette
app: under uvicorn in the tests, in-process through `httpx.ASGITransport` in `sandbox` mode.
The contract it follows is Sendcloud's published OpenAPI document for the v3 Orders API, kept
byte for byte in this repository as `tests/sendcloud/orders-openapi.yaml` (provenance in
`tests/sendcloud/SOURCE.md`), with sendcloud.dev's pages for what the document leaves out. Routes:

* `POST /api/v3/orders`: the batch upsert, checked in this order:
  1. HTTP Basic auth (public key, secret key) → 401 in the documented shapes ("No credentials"
     when the header is missing, "Invalid username/password." otherwise, unknown key included).
  2. Rate limit per account, two token buckets (a burst of `burst_per_second` refilled per
     second, and `requests_per_minute` refilled per minute); a request needs a token from both
     → 429 `throttled`. Counted before any validation; a 429 consumes nothing.
  3. `Sendcloud-Partner-Id`, when sent, must be a canonical UUID → 400, `source.header`.
  4. `Content-Type: application/json` → else 415; malformed JSON → 400 `parse_error`; not a
     JSON array → 400 `non_field_errors` "Wrong format"; over 100 orders → 400 at `/data/attributes/`.
  5. Every order is validated against `adapters.sendcloud.Order` (msgspec, strict) and the
     account: currencies in `currencies`, integration owned, `id` a string naming an existing
     order with the same `order_id` and integration. ALL errors of the batch come back in one
     400, with `/data/attributes/[N]/<path>` pointers and Pydantic-like details.
  6. All-or-nothing: any error → nothing is stored.
  7. An (integration, order_id) already held by another in-flight POST → the documented 400
     "We are still processing a previous request…" at `/data` (checked after validation). A POST
     holds its keys for `processing_delay` seconds, which is what makes the conflict observable.
  8. Upsert on (integration id, order_id): 201 `{"data": [{"id": <int>, "order_id", "order_number"}]}`
     in request order. A new order gets the next integer id (from 1); an update keeps its id.
* `GET /api/v3/orders` (filters `integration` (comma list), `order_id`, `order_number`, both
  case-insensitive) and `GET /api/v3/orders/{id}`: Basic auth as above, then the stored orders
  of the account's integrations, `id` as a string as in the spec's GET examples; a foreign or
  malformed `integration` filter → 400 `invalid_choice`; 404 in the documented `not_found` shape.
  Unknown routes and methods answer JSON:API 404/405 bodies.

Deliberately stricter than the real API (which is Pydantic in lax mode behind Django REST
Framework): types are the spec's, without coercion (`"1"` is not a quantity, a Price `value` must
be a JSON number); unknown fields are rejected ("Extra inputs are not permitted"), the readOnly
`created_at`/`modified_at` included; the model's own extra rules apply (ISO country codes, RFC 3339
date-times with an offset); only one error is reported per invalid order (msgspec stops at the first),
plus every failed account check; an `id` naming no visible order is an error; the Content-Type must
be `application/json` (DRF would answer 415 too). The 401 bodies, `throttled` 429 and 415/parse
errors follow DRF's wording where Sendcloud documents nothing.

Deliberately looser or simpler: no OAuth2 (Basic only); any well-formed partner UUID is accepted;
GETs are neither rate-limited nor paginated (one page, newest first, no `Link` header) and show
orders at once (real saving is asynchronous); stored orders carry no `created_at`/`modified_at`;
an empty batch `[]` is accepted (201, `{"data": []}`; the spec sets no `minItems`); the same
(integration, order_id) twice in one batch is allowed and the last one wins, as in an upsert loop
(both are answered with the same id and both are appended to `versions`).

Fault injection for tests: `fail_next(...)` answers the next POSTs with a given status before
auth and rate limit (nothing stored, no token used), and `delay_next(...)` makes the next POSTs
wait before they are handled. Over real HTTP, a POST whose client timed out is still handled once
the wait is over, as a real server would; an in-process call that is cancelled is not. Every POST
is recorded in `requests` (rejected ones included) when it arrives; its `status` is filled in
when it is answered.

The state is plain Python, not locked: use one fake from one event loop (other threads may read
`order()` and `requests` while it serves, as the tests do).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import hmac
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.sendcloud import DEFAULT_CURRENCIES, Order

__all__ = [
    "MAX_BATCH_SIZE",
    "STILL_PROCESSING",
    "Account",
    "FakeSendcloud",
    "RecordedRequest",
    "Reply",
    "StoredOrder",
    "create_app",
]

#: "Maximum batch size: 100 orders per request".
MAX_BATCH_SIZE = 100
#: The detail of the documented concurrency error (400, pointer `/data`).
STILL_PROCESSING = "We are still processing a previous request. Please try again in a moment."

_JSON = "application/json"
_PARTNER_HEADER = "Sendcloud-Partner-Id"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NO_CREDENTIALS = {
    "status": "401",
    "code": "authentication_failed",
    "title": "No credentials",
    "detail": "Authentication credentials were not provided.",
}
_BAD_CREDENTIALS = {
    "status": "401",
    "code": "authentication_failed",
    "title": "Invalid username/password.",
    "detail": "The username or password provided is incorrect. Please make a request with the valid credentials.",
}
_NOT_FOUND = {
    "status": "404",
    "code": "not_found",
    "title": "Not found",
    "detail": "The order could not be found with the search criteria given",
}
_FAULT_CODES = {400: "invalid", 401: "authentication_failed", 403: "forbidden", 404: "not_found", 429: "throttled"}
_PAYMENT_PRICES = ("total_price", "subtotal_price", "estimated_shipping_price", "estimated_tax_price")
_ITEM_PRICES = ("total_price", "unit_price")


# ---------------------------------------------------------------- public records


@dataclass(frozen=True, slots=True)
class Account:
    """A Sendcloud API key pair's account; `integration_ids=None` means it owns every integration."""

    secret_key: str
    integration_ids: frozenset[int] | None

    def owns(self, integration_id: int) -> bool:
        return self.integration_ids is None or integration_id in self.integration_ids


@dataclass(slots=True)
class RecordedRequest:
    """One POST as the fake saw it; `status` stays None while it is handled (or if it was cancelled)."""

    time: float
    #: the authenticated account's public key, None when authentication failed
    account: str | None
    status: int | None
    #: the parsed JSON body, None when it was not JSON
    body: Any
    #: number of elements when the body is a JSON array, else 0
    order_count: int
    partner_id: str | None


@dataclass(slots=True)
class StoredOrder:
    """An accepted order: Sendcloud's id, its JSON as last accepted, and every accepted version."""

    id: int
    order: dict[str, Any]
    versions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer of the fake: status, body bytes and headers (with the content type)."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    #: break the connection after the first bytes of the answer (the work was done, the answer lost)
    reset: bool = False

    @classmethod
    def of(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, msgspec.json.encode(payload), {"content-type": _JSON, **(headers or {})})

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


# ---------------------------------------------------------------- internals


def _error(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"status": str(status), "code": code, "detail": detail, **extra}


def _errors(status: int, *errors: dict[str, Any], headers: Mapping[str, str] | None = None) -> Reply:
    return Reply.of(status, {"errors": list(errors)}, headers)


def _invalid(index: int, path: str, detail: str) -> dict[str, Any]:
    """A per-order validation error, pointer in Sendcloud's `/data/attributes/[N]/…` style."""
    return _error(400, "invalid", detail, source={"pointer": f"/data/attributes/[{index}]{path}"})


def _seconds(value: float) -> str:
    """A `Retry-After` value: integral seconds as an integer, fractions kept (handy in tests)."""
    return format(value, "g")


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    retry_after: float | None
    body: bytes | None
    content_type: str

    def reply(self) -> Reply:
        headers = {} if self.retry_after is None else {"retry-after": _seconds(self.retry_after)}
        if self.body is None:
            phrase = HTTPStatus(self.status).phrase
            error = _error(self.status, _FAULT_CODES.get(self.status, "server_error"), f"{phrase} (injected fault)")
            return _errors(self.status, {**error, "title": phrase}, headers=headers)
        return Reply(self.status, self.body, {"content-type": self.content_type, **headers})


class _Bucket:
    """A token bucket: `capacity` tokens, refilled at `rate` tokens per second."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = max(self.updated, now)


class _Limiter:
    """The two buckets of one account; `take()` takes a token from both or from neither."""

    def __init__(self, requests_per_minute: int, burst_per_second: int, now: float) -> None:
        self.buckets = (
            _Bucket(burst_per_second, burst_per_second, now),
            _Bucket(requests_per_minute, requests_per_minute / 60, now),
        )

    def take(self, now: float) -> bool:
        for bucket in self.buckets:
            bucket.refill(now)
        if any(bucket.tokens < 1 - 1e-9 for bucket in self.buckets):  # 1e-9: float drift of the refills
            return False
        for bucket in self.buckets:
            bucket.tokens -= 1
        return True


_NOT_JSON = object()
_MESSAGE_AND_PATH = re.compile(r"(?P<message>.*) - at `(?P<path>\$[^`]*)`", re.DOTALL)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING = re.compile(r"Object missing required field `(?P<name>.*)`", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>.*)`", re.DOTALL)
_WRONG_TYPE = re.compile(r"Expected `(?P<type>[^`]+)`, got `[^`]+`")
_BOUND = re.compile(r"Expected `(?P<type>int|float)` (?P<op>>=|<=|>|<) (?P<bound>\S+)")
_LENGTH = re.compile(r"Expected `str` of length (?P<op>>=|<=) (?P<bound>\d+)")
_PATTERN = re.compile(r"Expected `str` matching regex (?P<regex>'.*')", re.DOTALL)
_TYPE_DETAILS = {
    "str": "Input should be a valid string",
    "int": "Input should be a valid integer",
    "float": "Input should be a valid number",
    "decimal": "Input should be a valid number",
    "bool": "Input should be a valid boolean",
    "object": "Input should be a valid dictionary",
    "array": "Input should be a valid list",
    "datetime": "Input should be a valid datetime",
}
_FIXED_DETAILS = {
    "Invalid decimal string": "Input should be a valid number",
    "Invalid RFC3339 encoded datetime": "Input should be a valid datetime",
    "Expected `datetime` with a timezone component": "Input should have timezone info",
}


def _escape(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _pointer_path(path: str) -> str:
    """msgspec's `$.order_details.order_items[0].quantity` → `/order_details/order_items/0/quantity`."""
    return "".join(_escape(name) if name else f"/{index}" for name, index in _PATH_PART.findall(path))


def _number(text: str) -> str:
    try:
        return format(float(text), "g")
    except ValueError:
        return text


def _unrepr(text: str) -> str:
    """msgspec quotes a regex with `repr()`; Pydantic shows it as written."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


def _bound_detail(kind: str, op: str, bound: str) -> str:
    if kind == "int" and op == ">=":  # ints: ">= 1" is Pydantic's "greater than 0" (quantity)
        return f"Input should be greater than {int(bound) - 1}"
    if kind == "int" and op == "<=":
        return f"Input should be less than {int(bound) + 1}"
    words = {">=": "greater than or equal to", "<=": "less than or equal to", ">": "greater than", "<": "less than"}
    return f"Input should be {words[op]} {_number(bound)}"


def _schema_error(index: int, exc: msgspec.ValidationError) -> dict[str, Any]:
    """msgspec's first error in one order → one Sendcloud error, Pydantic-like where easy."""
    text = str(exc)
    located = _MESSAGE_AND_PATH.fullmatch(text)
    message, path = (located["message"], _pointer_path(located["path"])) if located else (text, "")
    if match := _MISSING.fullmatch(message):
        return _invalid(index, path + _escape(match["name"]), "Field required")
    if match := _UNKNOWN.fullmatch(message):
        return _invalid(index, path + _escape(match["name"]), "Extra inputs are not permitted")
    if match := _WRONG_TYPE.fullmatch(message):
        kind = match["type"].removesuffix(" | null")
        return _invalid(index, path, _TYPE_DETAILS.get(kind, message))
    if match := _BOUND.fullmatch(message):
        return _invalid(index, path, _bound_detail(match["type"], match["op"], match["bound"]))
    if match := _LENGTH.fullmatch(message):
        bound = int(match["bound"])
        plural = "" if bound == 1 else "s"
        least = "at least" if match["op"] == ">=" else "at most"
        return _invalid(index, path, f"String should have {least} {bound} character{plural}")
    if match := _PATTERN.fullmatch(message):
        return _invalid(index, path, f"String should match pattern '{_unrepr(match['regex'])}'")
    return _invalid(index, path, _FIXED_DETAILS.get(message, message))


def _price_nodes(raw: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Price object of an order that already passed the model, with its pointer path."""
    payment = raw["payment_details"]
    for name in _PAYMENT_PRICES:
        if isinstance(node := payment.get(name), dict):
            yield f"/payment_details/{name}", node
    for position, item in enumerate(raw["order_details"]["order_items"]):
        for name in _ITEM_PRICES:
            if isinstance(node := item.get(name), dict):
                yield f"/order_details/order_items/{position}/{name}", node


def _one_of(values: frozenset[str]) -> str:
    quoted = [f"'{value}'" for value in sorted(values)]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _parse_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except (ValueError, RecursionError):  # msgspec.DecodeError is a ValueError, as is UnicodeDecodeError
        return _NOT_JSON


def _positive_int(text: str) -> int | None:
    """`text` as a Sendcloud id (ASCII digits, at most 18 of them), else None."""
    if text.isascii() and text.isdigit() and len(text) <= 18 and int(text) >= 1:
        return int(text)
    return None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------- the fake


class FakeSendcloud:
    """State and behaviour of the fake; see the module docstring for the rules it enforces."""

    def __init__(
        self,
        *,
        accounts: Mapping[str, Account],
        currencies: frozenset[str] = DEFAULT_CURRENCIES,
        rate_limit: bool = True,
        requests_per_minute: int = 100,
        burst_per_second: int = 15,
        processing_delay: float = 0.0,
        retry_after_on_429: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute < 1 or burst_per_second < 1:
            raise ValueError("requests_per_minute and burst_per_second must be at least 1")
        if processing_delay < 0 or (retry_after_on_429 is not None and retry_after_on_429 < 0):
            raise ValueError("processing_delay and retry_after_on_429 cannot be negative")
        self.accounts: dict[str, Account] = dict(accounts)
        self.currencies = currencies
        self.rate_limit = rate_limit
        self.requests_per_minute = requests_per_minute
        self.burst_per_second = burst_per_second
        self.processing_delay = processing_delay
        self.retry_after_on_429 = retry_after_on_429
        self.clock = clock
        #: every POST, in arrival order
        self.requests: list[RecordedRequest] = []
        #: POSTs answered "still processing" (another request held one of their orders)
        self.still_processing = 0
        #: the store: (integration id, order_id) → order
        self.orders: dict[tuple[int, str], StoredOrder] = {}
        self._keys_by_id: dict[int, tuple[int, str]] = {}
        self._next_id = 1
        self._in_flight: set[tuple[int, str]] = set()
        self._limiters: dict[str, _Limiter] = {}
        self._faults: deque[_Fault] = deque()
        self._delays: deque[float] = deque()
        self._resets = 0
        self._outage_until = 0.0
        self._outage_status = 503

    @classmethod
    def sandbox(cls, **options: Any) -> FakeSendcloud:
        """One account, public key "sandbox" and secret "sandbox", owning every integration id."""
        return cls(accounts={"sandbox": Account(secret_key="sandbox", integration_ids=None)}, **options)

    # ------------------------------------------------------------ fault injection and records

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: bytes | None = None,
        content_type: str = _JSON,
    ) -> None:
        """The next `times` POSTs answer `status` (a JSON:API error body, or `body` as given),
        before auth and rate limit, storing nothing; `retry_after` adds a `Retry-After` header."""
        if not 200 <= status <= 599:
            raise ValueError(f"status {status} is not between 200 and 599")
        HTTPStatus(status)  # ValueError for a status without a reason phrase
        self._faults.extend(_Fault(status, retry_after, body, content_type) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next `times` POSTs wait `seconds` before they are handled (then are handled normally)."""
        if seconds < 0:
            raise ValueError("seconds cannot be negative")
        self._delays.extend(seconds for _ in range(times))

    def reset_next(self, times: int = 1) -> None:
        """The next `times` POSTs are handled (orders stored) but the connection breaks mid-answer."""
        self._resets += times

    def outage(self, seconds: float, status: int = 503) -> None:
        """For the next `seconds`, every POST answers `status`, storing nothing (Sendcloud down)."""
        HTTPStatus(status)
        self._outage_until = self.clock() + seconds
        self._outage_status = status

    def order(self, integration_id: int, order_id: str) -> StoredOrder | None:
        """The stored order for (integration id, order_id), or None."""
        return self.orders.get((integration_id, order_id))

    def order_by_id(self, sendcloud_id: int) -> StoredOrder | None:
        """The stored order with Sendcloud id `sendcloud_id`, or None."""
        key = self._keys_by_id.get(sendcloud_id)
        return None if key is None else self.orders[key]

    def statuses(self) -> list[int | None]:
        """The status answered to each POST, in arrival order (None: not answered yet, or cancelled)."""
        return [request.status for request in self.requests]

    def count_429(self) -> int:
        """How many POSTs were answered 429 (by the rate limit or an injected fault)."""
        return self.statuses().count(429)

    # ------------------------------------------------------------ POST /api/v3/orders

    async def handle_post(
        self,
        body: bytes,
        *,
        authorization: str | None,
        content_type: str | None = _JSON,
        partner_id: str | None = None,
    ) -> Reply:
        """`POST /api/v3/orders` with these header values and raw body."""
        parsed = _parse_json(body)
        record = RecordedRequest(
            time=self.clock(),
            account=None,
            status=None,
            body=None if parsed is _NOT_JSON else parsed,
            order_count=len(parsed) if isinstance(parsed, list) else 0,
            partner_id=partner_id,
        )
        self.requests.append(record)
        reply = await self._post(record, parsed, authorization, content_type, partner_id)
        record.status = reply.status
        if self._resets and reply.status < 500:
            self._resets -= 1
            return replace(reply, reset=True)
        return reply

    async def _post(
        self,
        record: RecordedRequest,
        parsed: Any,
        authorization: str | None,
        content_type: str | None,
        partner_id: str | None,
    ) -> Reply:
        if self._delays:
            await asyncio.sleep(self._delays.popleft())
        account = self._authenticate(authorization)
        if not isinstance(account, Reply):
            record.account = account[0]
        if self.clock() < self._outage_until:
            return _Fault(self._outage_status, None, None, _JSON).reply()
        if self._faults:
            return self._faults.popleft().reply()
        if isinstance(account, Reply):
            return account
        public_key, owner = account
        if self.rate_limit and not self._limiter(public_key).take(self.clock()):
            headers = {} if self.retry_after_on_429 is None else {"retry-after": _seconds(self.retry_after_on_429)}
            error = _error(429, "throttled", "Request was throttled.", title="Too Many Requests")
            return _errors(429, error, headers=headers)
        if partner_id is not None and not _UUID.fullmatch(partner_id):
            detail = f"{_PARTNER_HEADER} must be a valid UUID."
            return _errors(400, _error(400, "invalid", detail, source={"header": _PARTNER_HEADER}))
        if _media_type(content_type) != _JSON:
            detail = f'Unsupported media type "{content_type or ""}" in request.'
            return _errors(415, _error(415, "unsupported_media_type", detail))
        if parsed is _NOT_JSON:
            return _errors(400, _error(400, "parse_error", "JSON parse error - the body is not valid JSON."))
        if not isinstance(parsed, list):
            detail = "Wrong request format, expected list of objects"
            return _errors(400, _error(400, "non_field_errors", detail, title="Wrong format"))
        if len(parsed) > MAX_BATCH_SIZE:
            detail = f"Orders list should have at most {MAX_BATCH_SIZE} items, not {len(parsed)}"
            return _errors(400, _error(400, "invalid", detail, source={"pointer": "/data/attributes/"}))
        batch, errors = self._validate(parsed, owner)
        if errors:
            return _errors(400, *errors)
        keys = {key for key, _ in batch}
        if keys & self._in_flight:
            self.still_processing += 1
            return _errors(400, _error(400, "invalid", STILL_PROCESSING, source={"pointer": "/data"}))
        self._in_flight |= keys
        try:
            await asyncio.sleep(self.processing_delay)
            data = [self._upsert(key, raw) for key, raw in batch]
        finally:
            self._in_flight -= keys
        return Reply.of(201, {"data": data})

    def _authenticate(self, authorization: str | None) -> tuple[str, Account] | Reply:
        if not authorization or not authorization.strip():
            return _errors(401, _NO_CREDENTIALS, headers={"www-authenticate": 'Basic realm="api"'})
        refused = _errors(401, _BAD_CREDENTIALS, headers={"www-authenticate": 'Basic realm="api"'})
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return refused
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return refused
        public_key, colon, secret_key = decoded.partition(":")
        account = self.accounts.get(public_key)
        if not colon or account is None:
            return refused
        if not hmac.compare_digest(secret_key.encode(), account.secret_key.encode()):
            return refused
        return public_key, account

    def _limiter(self, public_key: str) -> _Limiter:
        limiter = self._limiters.get(public_key)
        if limiter is None:
            limiter = _Limiter(self.requests_per_minute, self.burst_per_second, self.clock())
            self._limiters[public_key] = limiter
        return limiter

    def _validate(
        self, elements: list[Any], owner: Account
    ) -> tuple[list[tuple[tuple[int, str], dict[str, Any]]], list[dict[str, Any]]]:
        """The batch as (key, raw order) pairs, and every error found in it."""
        batch: list[tuple[tuple[int, str], dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        for index, element in enumerate(elements):
            try:
                order = msgspec.convert(element, Order)
            except msgspec.ValidationError as exc:
                errors.append(_schema_error(index, exc))
                continue
            except RecursionError:
                errors.append(_invalid(index, "", "Input is nested too deeply"))
                continue
            found = self._check_order(index, element, order, owner)
            errors.extend(found)
            if not found:
                batch.append(((order.order_details.integration.id, order.order_id), element))
        return batch, errors

    def _check_order(self, index: int, raw: dict[str, Any], order: Order, owner: Account) -> list[dict[str, Any]]:
        """What the model cannot check: Price values and currencies, ownership, the `id` it names."""
        errors: list[dict[str, Any]] = []
        for path, price in _price_nodes(raw):
            if isinstance(price.get("value"), str):  # msgspec converts a decimal string to Decimal
                errors.append(_invalid(index, f"{path}/value", "Input should be a valid number"))
            if price.get("currency") not in self.currencies:
                errors.append(_invalid(index, f"{path}/currency", f"Input should be {_one_of(self.currencies)}"))
        integration_id = order.order_details.integration.id
        if not owner.owns(integration_id):
            detail = f"Integration with id {integration_id} does not exist"
            errors.append(_invalid(index, "/order_details/integration/id", detail))
        if order.id is not None:
            sendcloud_id = _positive_int(order.id)
            key = None if sendcloud_id is None else self._keys_by_id.get(sendcloud_id)
            if key is None or not owner.owns(key[0]):
                errors.append(_invalid(index, "/id", f"Order with id {order.id} does not exist"))
            elif key[1] != order.order_id:
                errors.append(_invalid(index, "/order_id", f"Order id {key[1]} cannot be changed"))
            elif key[0] != integration_id:
                detail = f"Integration of order {order.id} cannot be changed"
                errors.append(_invalid(index, "/order_details/integration/id", detail))
        return errors

    def _upsert(self, key: tuple[int, str], raw: dict[str, Any]) -> dict[str, Any]:
        stored = self.orders.get(key)
        if stored is None:
            stored = StoredOrder(id=self._next_id, order=raw)
            self._next_id += 1
            self.orders[key] = stored
            self._keys_by_id[stored.id] = key
        stored.order = raw
        stored.versions.append(raw)
        return {"id": stored.id, "order_id": raw["order_id"], "order_number": raw["order_number"]}

    # ------------------------------------------------------------ GET /api/v3/orders[/{id}]

    def handle_list(
        self,
        *,
        authorization: str | None,
        integration: str | None = None,
        order_id: str | None = None,
        order_number: str | None = None,
    ) -> Reply:
        """`GET /api/v3/orders`: the account's stored orders, newest first (`-pk`), filtered."""
        account = self._authenticate(authorization)
        if isinstance(account, Reply):
            return account
        owner = account[1]
        wanted: set[int] | None = None
        if integration is not None:
            wanted = set()
            for part in integration.split(","):
                text = part.strip()
                integration_id = _positive_int(text)
                if integration_id is None or not owner.owns(integration_id):
                    detail = f"Select a valid choice. {text} is not one of the available choices."
                    return _errors(400, _error(400, "invalid_choice", detail, source={"parameter": "integration"}))
                wanted.add(integration_id)
        found = [
            stored
            for (integration_id, stored_order_id), stored in self.orders.items()
            if owner.owns(integration_id)
            and (wanted is None or integration_id in wanted)
            and (order_id is None or stored_order_id.casefold() == order_id.casefold())
            and (order_number is None or str(stored.order["order_number"]).casefold() == order_number.casefold())
        ]
        found.sort(key=lambda stored: stored.id, reverse=True)
        return Reply.of(200, {"data": [self._shown(stored) for stored in found]})

    def handle_retrieve(self, sendcloud_id: int, *, authorization: str | None) -> Reply:
        """`GET /api/v3/orders/{id}`: one stored order of the account, or the documented 404."""
        account = self._authenticate(authorization)
        if isinstance(account, Reply):
            return account
        key = self._keys_by_id.get(sendcloud_id)
        if key is None or not account[1].owns(key[0]):
            return _errors(404, _NOT_FOUND)
        return Reply.of(200, {"data": self._shown(self.orders[key])})

    @staticmethod
    def _shown(stored: StoredOrder) -> dict[str, Any]:
        """A stored order as GET shows it: its JSON with Sendcloud's `id` as a string."""
        return {"id": str(stored.id), **{name: value for name, value in stored.order.items() if name != "id"}}


# ---------------------------------------------------------------- the Starlette app


class _ConnectionReset(Exception):
    """Raised after the first bytes of an answer: the server drops the connection."""


class _BrokenResponse(Response):
    """Sends the status line and half the body, then breaks the connection (uvicorn closes it)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        raise _ConnectionReset


def _response(reply: Reply) -> Response:
    kind = _BrokenResponse if reply.reset else Response
    return kind(content=reply.body, status_code=reply.status, headers=dict(reply.headers))


def create_app(fake: FakeSendcloud) -> Starlette:
    """The fake served over HTTP: `POST`/`GET /api/v3/orders` and `GET /api/v3/orders/{id}`."""

    async def orders(request: Request) -> Response:
        headers = request.headers
        if request.method == "GET":
            query = request.query_params
            reply = fake.handle_list(
                authorization=headers.get("authorization"),
                integration=query.get("integration"),
                order_id=query.get("order_id"),
                order_number=query.get("order_number"),
            )
            return _response(reply)
        reply = await fake.handle_post(
            await request.body(),
            authorization=headers.get("authorization"),
            content_type=headers.get("content-type"),
            partner_id=headers.get(_PARTNER_HEADER),
        )
        return _response(reply)

    async def one_order(request: Request) -> Response:
        sendcloud_id: int = request.path_params["id"]
        return _response(fake.handle_retrieve(sendcloud_id, authorization=request.headers.get("authorization")))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        phrase = HTTPStatus(status).phrase
        code = "not_found" if status == 404 else "invalid"
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return _response(_errors(status, _error(status, code, phrase, title=phrase), headers=headers))

    return Starlette(
        routes=[
            Route("/api/v3/orders", orders, methods=["GET", "POST"]),
            Route("/api/v3/orders/{id:int}", one_order, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
