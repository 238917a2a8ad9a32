"""`service.sendcloud`: the batch client against `httpx.MockTransport`, one test per row of DESIGN §6."""

from __future__ import annotations

import base64
import importlib.abc
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from adapters import get_adapter
from adapters.sendcloud import Order, encode_orders
from service.fake_sendcloud import FakeSendcloud
from service.fake_sendcloud import create_app as create_fake_app
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.sendcloud import MAX_RETRY_AFTER, SendcloudClient, parse_retry_after
from service.sender import Rejection, SendOutcome, SendResult, backoff_delay

BASE_URL = "https://panel.sendcloud.sc/api/v3"
FIXTURE = (
    Path(__file__).parent
    / "fixtures"
    / "shopify"
    / "shopify_python_api__order_1001_us_authorized_3items__rest_envelope.json"
)
TEMPLATE = get_adapter("shopify").translate(FIXTURE.read_bytes(), 7)
ORDERS = [msgspec.structs.replace(TEMPLATE, order_id=f"shop-450789469-{i}", order_number=f"#100{i}") for i in range(3)]
assert TEMPLATE.shipping_address is not None and TEMPLATE.shipping_address.email is not None
#: Values from the orders that must never reach `SendResult.detail`.
PERSONAL = [
    TEMPLATE.shipping_address.address_line_1,
    TEMPLATE.shipping_address.email,
    TEMPLATE.shipping_address.name,
    *(order.order_id for order in ORDERS),
]

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(handler: Handler, metrics: Metrics | None = None, **kwargs: Any) -> SendcloudClient:
    return SendcloudClient(
        base_url=kwargs.pop("base_url", BASE_URL),
        public_key=kwargs.pop("public_key", "pub-key"),
        secret_key=kwargs.pop("secret_key", "sec-key"),
        timeout=5.0,
        limiter=kwargs.pop("limiter", RateLimiter(requests_per_minute=100_000, burst_per_second=100_000)),
        metrics=metrics or Metrics(),
        transport=httpx.MockTransport(handler),
        **kwargs,
    )


async def _send(handler: Handler, orders: list[Order] = ORDERS, **kwargs: Any) -> SendResult:
    async with _client(handler, **kwargs) as client:
        return await client.send(orders)


def _answer(
    status: int, body: object = None, *, text: str | None = None, headers: dict[str, str] | None = None
) -> Handler:
    """A handler that always gives the same response: JSON `body`, or raw `text`."""

    def handle(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers={"content-type": "text/html", **(headers or {})})
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handle


def _raise(exc: type[httpx.TransportError]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc("boom at " + request.url.host, request=request)

    return handle


def _error(pointer: str | None, detail: str, code: str = "invalid", **source: str) -> dict[str, Any]:
    error: dict[str, Any] = {"status": "400", "code": code, "detail": detail}
    if pointer is not None:
        source["pointer"] = pointer
    if source:
        error["source"] = source
    return error


def _created(ids: list[int | str], orders: list[Order] = ORDERS) -> dict[str, Any]:
    return {
        "data": [
            {"id": id_, "order_id": order.order_id, "order_number": order.order_number}
            for id_, order in zip(ids, orders, strict=False)
        ]
    }


HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
ADDRESS = TEMPLATE.shipping_address.address_line_1
EMAIL = TEMPLATE.shipping_address.email
STILL_PROCESSING = "We are still processing a previous request. Please try again in a moment."
TOO_MANY = "Orders list should have at most 100 items, not 101"
UNAUTHORIZED = {
    "errors": [
        {
            "status": "401",
            "code": "authentication_failed",
            "title": "Invalid username/password.",
            "detail": "The username or password provided is incorrect. "
            "Please make a request with the valid credentials.",
        }
    ]
}

#: name → (handler, outcome, status, cause): every row of the classification.
SCENARIOS: dict[str, tuple[Handler, SendOutcome, int | None, str]] = {
    "201 int ids": (_answer(201, _created([669, 670, 671])), SendOutcome.ACCEPTED, 201, "201"),
    "200 str ids": (_answer(200, _created(["669", "670", "671"])), SendOutcome.ACCEPTED, 200, "200"),
    "201 missing an order": (_answer(201, _created([669, 670])), SendOutcome.RETRY, 201, "unexpected_response"),
    "201 not json": (_answer(201, text="created"), SendOutcome.RETRY, 201, "unexpected_response"),
    "201 data not a list": (_answer(201, {"data": {"id": 1}}), SendOutcome.RETRY, 201, "unexpected_response"),
    "201 entry without id": (
        _answer(201, {"data": [{"order_id": o.order_id} for o in ORDERS]}),
        SendOutcome.RETRY,
        201,
        "unexpected_response",
    ),
    "204 empty": (_answer(204), SendOutcome.RETRY, 204, "unexpected_response"),
    "400 per order": (
        _answer(
            400,
            {
                "errors": [
                    _error("/data/attributes/[0]/order_id", f"Order id {ORDERS[0].order_id} cannot be changed"),
                    _error("/data/attributes/[2]/shipping_address/email", f"{EMAIL} is not a valid address"),
                    _error("/data/attributes/[2]/shipping_address/address_line_1", f"'{ADDRESS}' is too long"),
                ]
            },
        ),
        SendOutcome.REJECTED,
        400,
        "rejected",
    ),
    "400 still processing": (
        _answer(400, {"errors": [_error("/data", STILL_PROCESSING)]}),
        SendOutcome.RETRY,
        400,
        "still_processing",
    ),
    "400 still processing, no pointer": (
        _answer(400, {"errors": [_error(None, STILL_PROCESSING)]}),
        SendOutcome.RETRY,
        400,
        "still_processing",
    ),
    "409": (_answer(409, {"errors": [_error("/data", "conflict")]}), SendOutcome.RETRY, 409, "conflict"),
    "429": (_answer(429), SendOutcome.RETRY, 429, "rate_limited"),
    "500 html": (_answer(500, text=HTML), SendOutcome.RETRY, 500, "500"),
    "502 html": (_answer(502, text=HTML), SendOutcome.RETRY, 502, "502"),
    "503 html": (_answer(503, text=HTML), SendOutcome.RETRY, 503, "503"),
    "timeout": (_raise(httpx.ReadTimeout), SendOutcome.RETRY, None, "timeout"),
    "connect timeout": (_raise(httpx.ConnectTimeout), SendOutcome.RETRY, None, "timeout"),
    "connection refused": (_raise(httpx.ConnectError), SendOutcome.RETRY, None, "connection_error"),
    "connection dropped": (_raise(httpx.RemoteProtocolError), SendOutcome.RETRY, None, "connection_error"),
    "401": (_answer(401, UNAUTHORIZED), SendOutcome.MISCONFIGURED, 401, "unauthorized"),
    "403 html": (_answer(403, text="<h1>Forbidden</h1>"), SendOutcome.MISCONFIGURED, 403, "forbidden"),
    "400 too many orders": (
        _answer(400, {"errors": [_error("/data/attributes/", TOO_MANY)]}),
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
    ),
    "400 partner header": (
        _answer(400, {"errors": [_error(None, "Invalid partner id", header="Sendcloud-Partner-Id")]}),
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
    ),
    "400 wrong format": (
        _answer(
            400, {"errors": [_error(None, "Wrong request format, expected list of objects", code="non_field_errors")]}
        ),
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
    ),
    "400 index beyond the batch": (
        _answer(400, {"errors": [_error("/data/attributes/[3]/order_id", f"{EMAIL} again")]}),
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
    ),
    "400 batch-level quoting order data": (
        _answer(400, {"errors": [_error("/data/attributes/", f"cannot ship to {ADDRESS} ({EMAIL})")]}),
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
    ),
    "400 still processing and batch-level": (
        _answer(400, {"errors": [_error("/data", STILL_PROCESSING), _error("/data/attributes/", TOO_MANY)]}),
        SendOutcome.MISCONFIGURED,
        400,
        "batch_invalid",
    ),
    "400 html": (_answer(400, text="<h1>Bad Request</h1>"), SendOutcome.MISCONFIGURED, 400, "batch_invalid"),
    "400 json without errors": (_answer(400, {"message": "bad"}), SendOutcome.MISCONFIGURED, 400, "batch_invalid"),
    "400 errors not objects": (_answer(400, {"errors": ["bad", 3]}), SendOutcome.MISCONFIGURED, 400, "batch_invalid"),
    "404": (_answer(404, text="<h1>Not Found</h1>"), SendOutcome.RETRY, 404, "404"),
    "302": (_answer(302, headers={"location": "https://example.com/login"}), SendOutcome.RETRY, 302, "302"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", SCENARIOS)
async def test_every_answer_is_classified_and_never_raises(name: str) -> None:
    """Each status, body and transport failure maps to its outcome and cause, as DESIGN §6 says."""
    handler, outcome, status, cause = SCENARIOS[name]
    result = await _send(handler)
    assert (result.outcome, result.status, result.cause) == (outcome, status, cause)
    assert result.detail


@pytest.mark.anyio
@pytest.mark.parametrize("name", SCENARIOS)
async def test_no_order_data_in_any_detail(name: str) -> None:
    """`SendResult.detail` never quotes addresses, e-mails, names or order ids, even when Sendcloud does."""
    result = await _send(SCENARIOS[name][0])
    for value in PERSONAL:
        assert value not in result.detail


@pytest.mark.anyio
async def test_201_maps_ids_to_orders_by_order_id() -> None:
    """Sendcloud's ids are matched by `order_id`, not by position, and keep their type (int or str)."""
    body = _created([669, "1337", 12])
    body["data"].reverse()
    body["data"].append({"id": 1, "order_id": "not-in-this-batch", "order_number": "x"})
    result = await _send(_answer(201, body))
    assert result.outcome is SendOutcome.ACCEPTED
    assert result.accepted == {ORDERS[0].order_id: 669, ORDERS[1].order_id: "1337", ORDERS[2].order_id: 12}
    assert result.rejected == {}


@pytest.mark.anyio
async def test_an_order_missing_from_data_keeps_the_whole_batch() -> None:
    """A 2xx that does not list every order sent is a RETRY naming how many are missing, not a partial success."""
    result = await _send(_answer(201, _created([669, 670])))
    assert result.outcome is SendOutcome.RETRY
    assert result.accepted == {}
    assert "1 of 3" in result.detail


@pytest.mark.anyio
async def test_400_rejects_exactly_the_named_orders_with_every_error() -> None:
    """Errors at `/data/attributes/[N]/…` are grouped by index, pointer, code and detail as Sendcloud sent them."""
    handler = SCENARIOS["400 per order"][0]
    result = await _send(handler)
    assert result.outcome is SendOutcome.REJECTED
    assert result.rejected == {
        0: [Rejection("/data/attributes/[0]/order_id", "invalid", f"Order id {ORDERS[0].order_id} cannot be changed")],
        2: [
            Rejection("/data/attributes/[2]/shipping_address/email", "invalid", f"{EMAIL} is not a valid address"),
            Rejection("/data/attributes/[2]/shipping_address/address_line_1", "invalid", f"'{ADDRESS}' is too long"),
        ],
    }
    assert "2 of 3" in result.detail


@pytest.mark.anyio
async def test_400_rejection_ignores_batch_level_errors_beside_order_errors() -> None:
    """Order errors win over batch-level ones in the same answer: the named orders are rejected, the rest resent."""
    body = {
        "errors": [
            _error("/data/attributes/[1]/order_details/order_items/0/quantity", "Input should be greater than 0"),
            _error("/data", STILL_PROCESSING),
            _error("/data/attributes/", TOO_MANY),
        ]
    }
    result = await _send(_answer(400, body))
    assert result.outcome is SendOutcome.REJECTED
    assert list(result.rejected) == [1]
    assert result.rejected[1][0].code == "invalid"


@pytest.mark.anyio
async def test_a_json_api_error_object_instead_of_a_list_is_read() -> None:
    """The spec types `errors` as array or object; a lone object pointing at an order still rejects it."""
    result = await _send(_answer(400, {"errors": _error("/data/attributes/1/order_id", "Field required")}))
    assert result.outcome is SendOutcome.REJECTED
    assert result.rejected == {1: [Rejection("/data/attributes/1/order_id", "invalid", "Field required")]}


@pytest.mark.anyio
async def test_batch_level_400_names_code_location_and_known_safe_text() -> None:
    """The operator sees what was wrong with the batch; Sendcloud's text only when it is a known order-free one."""
    too_many = await _send(SCENARIOS["400 too many orders"][0])
    assert f"invalid at /data/attributes/ ({TOO_MANY})" in too_many.detail
    partner = await _send(SCENARIOS["400 partner header"][0])
    assert "in header Sendcloud-Partner-Id" in partner.detail
    assert "Invalid partner id" not in partner.detail
    html = await _send(SCENARIOS["400 html"][0])
    assert "text/html" in html.detail


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("7", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("soon", None),
        ("-5", None),
        ("99999999", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
async def test_429_carries_retry_after(header: str | None, expected: float | None) -> None:
    """A 429 is RETRY with Sendcloud's `Retry-After` in seconds; garbage is ignored, a past date is 0."""
    headers = {"Retry-After": header} if header is not None else None
    result = await _send(_answer(429, headers=headers))
    assert (result.outcome, result.cause, result.retry_after) == (SendOutcome.RETRY, "rate_limited", expected)


@pytest.mark.anyio
async def test_429_with_an_http_date() -> None:
    """`Retry-After` as an HTTP-date two minutes ahead gives about 120 seconds."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    result = await _send(_answer(429, headers={"Retry-After": when}))
    assert result.retry_after is not None
    assert 115 <= result.retry_after <= 120


@pytest.mark.anyio
async def test_429_holds_back_every_lane_on_the_account() -> None:
    """After a 429 with `Retry-After: 30`, the shared limiter grants the next token only 30 s later."""
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(clock=lambda: now[0], sleep=sleep)
    await _send(_answer(429, headers={"Retry-After": "30"}), limiter=limiter)
    assert await limiter.acquire() == pytest.approx(30.0)


@pytest.mark.anyio
async def test_5xx_keeps_retry_after_when_sent() -> None:
    """A 503 with `Retry-After` passes it on; an HTML body is described, not parsed."""
    result = await _send(_answer(503, text=HTML, headers={"Retry-After": "30"}))
    assert (result.outcome, result.cause, result.retry_after) == (SendOutcome.RETRY, "503", 30.0)
    assert "text/html" in result.detail


@pytest.mark.anyio
async def test_the_request_is_the_batch_with_auth_and_headers() -> None:
    """POST {base_url}/orders, Basic auth, JSON content type, our User-Agent, body exactly `encode_orders`."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=_created([1, 2, 3]))

    await _send(handle, base_url=BASE_URL + "/")
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://panel.sendcloud.sc/api/v3/orders"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"pub-key:sec-key").decode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("order-bridge/")
    assert "sendcloud-partner-id" not in request.headers
    assert request.content == encode_orders(ORDERS)
    assert len(json.loads(request.content)) == 3


@pytest.mark.anyio
async def test_the_partner_header_is_sent_when_configured() -> None:
    """`Sendcloud-Partner-Id` goes out only when a partner id is configured."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=_created([1, 2, 3]))

    await _send(handle, partner_id="4f6a1c2e-0000-4000-8000-000000000001")
    assert seen[0].headers["sendcloud-partner-id"] == "4f6a1c2e-0000-4000-8000-000000000001"


@pytest.mark.anyio
async def test_metrics_count_each_request_by_status() -> None:
    """Every request is counted under its HTTP status, or `timeout` / `connection_error`, and timed."""
    metrics = Metrics()
    handlers = [
        _answer(201, _created([1, 2, 3])),
        _answer(201, _created([1, 2, 3])),
        _answer(429),
        _answer(502, text=HTML),
        _raise(httpx.ReadTimeout),
        _raise(httpx.ConnectError),
    ]
    for handler in handlers:
        await _send(handler, metrics=metrics)
    sample = metrics.registry.get_sample_value
    counts = {
        status: sample("order_bridge_sendcloud_requests_total", {"status": status})
        for status in ("201", "429", "502", "timeout", "connection_error")
    }
    assert counts == {"201": 2.0, "429": 1.0, "502": 1.0, "timeout": 1.0, "connection_error": 1.0}
    assert sample("order_bridge_sendcloud_request_duration_seconds_count") == 6.0


@pytest.mark.anyio
async def test_one_client_sends_many_batches_and_takes_a_token_each() -> None:
    """The pooled client serves batch after batch, each after a token from the limiter."""
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(
        requests_per_minute=100, burst_per_second=3, burst_headroom=0, clock=lambda: now[0], sleep=sleep
    )
    async with _client(_answer(201, _created([1, 2, 3])), limiter=limiter) as client:
        results = [await client.send(ORDERS) for _ in range(4)]
    assert {r.outcome for r in results} == {SendOutcome.ACCEPTED}
    assert now[0] == pytest.approx(1.0)  # the fourth waited for the burst window


class FakeTime:
    """A clock that moves only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _one_a_second(fake: FakeTime) -> RateLimiter:
    return RateLimiter(
        requests_per_minute=100, burst_per_second=1, burst_headroom=0, clock=fake.clock, sleep=fake.sleep
    )


@pytest.mark.anyio
async def test_reserve_then_send_reserved_costs_one_token() -> None:
    """`reserve()` + `send(reserved=True)` costs one token; a plain `send()` takes its own."""
    fake = FakeTime()
    async with _client(_answer(201, _created([1, 2, 3])), limiter=_one_a_second(fake)) as client:
        await client.reserve()
        assert (await client.send(ORDERS, reserved=True)).outcome is SendOutcome.ACCEPTED
        assert fake.now == 0.0
        await client.send(ORDERS)  # takes its own token: waits for the next second
        assert fake.now == pytest.approx(1.0)
        await client.reserve()
        assert fake.now == pytest.approx(2.0)
        await client.send(ORDERS, reserved=True)
        assert fake.now == pytest.approx(2.0)


@pytest.mark.anyio
async def test_programming_errors_raise() -> None:
    """An empty batch or a base URL that is not http(s) is the caller's bug, not a SendResult."""
    with pytest.raises(ValueError):
        await _send(_answer(201, {"data": []}), orders=[])
    with pytest.raises(ValueError):
        _client(_answer(201), base_url="panel.sendcloud.sc/api/v3")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("", None),
        ("Mon, 99 Foo 2024 25:61:00 GMT", None),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delay-seconds and HTTP-dates parse, capped at MAX_RETRY_AFTER; anything else is None."""
    assert parse_retry_after(value) == expected


def test_backoff_grows_doubling_from_base_up_to_the_cap() -> None:
    """With a fixed draw the delay doubles per attempt from `base` and stops at `cap`."""
    delays = [backoff_delay(attempt, None, random=lambda: 0.5) for attempt in range(1, 11)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff_delay(10_000, None, random=lambda: 0.999) == pytest.approx(59.94)


def test_backoff_is_full_jitter_within_bounds() -> None:
    """Real draws stay in [0, min(cap, base·2^(n-1))) and actually vary."""
    for attempt in (1, 3, 8, 50):
        ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, None) for _ in range(200)]
        assert all(0 <= d < ceiling for d in draws)
        assert len(set(draws)) > 100
    assert backoff_delay(1, None, random=lambda: 0.0) == 0.0
    assert backoff_delay(3, None, base=1.0, cap=3.0, random=lambda: 0.999) == pytest.approx(2.997)


def test_backoff_honours_retry_after() -> None:
    """Never less than Sendcloud's `Retry-After`, plus up to `base` of jitter, even above the cap."""
    assert backoff_delay(1, 30.0, random=lambda: 0.0) == 30.0
    assert backoff_delay(1, 30.0, random=lambda: 0.999) == pytest.approx(30.4995)
    assert backoff_delay(1, 120.0, random=lambda: 0.5) == pytest.approx(120.25)
    assert backoff_delay(9, 1.0, random=lambda: 0.5) == 30.0  # the exponential part is longer: it wins
    assert backoff_delay(1, -4.0, random=lambda: 0.0) == 0.0
    for _ in range(100):
        assert 10.0 <= backoff_delay(2, 10.0) < 10.5


def test_backoff_attempts_count_from_one() -> None:
    """Attempt 0 is a caller's bug."""
    with pytest.raises(ValueError):
        backoff_delay(0, None)


class _ImportSpy(importlib.abc.MetaPathFinder):
    """Records every module lookup that misses `sys.modules`."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.names.append(fullname)


@pytest.mark.anyio
async def test_a_batch_over_real_http_looks_up_no_module(serve: Any) -> None:
    """httpcore imports `sniffio` on every request; without it installed, every batch searched
    sys.path for it, and for nothing (about 0.35 ms of the event loop per request)."""
    fake = FakeSendcloud.sandbox(rate_limit=False)
    server = serve(create_fake_app(fake))
    client = SendcloudClient(
        base_url=f"{server.url}/api/v3",
        public_key="sandbox",
        secret_key="sandbox",
        timeout=5.0,
        limiter=RateLimiter(requests_per_minute=100_000, burst_per_second=100_000),
        metrics=Metrics(),
    )
    spy = _ImportSpy()
    async with client:
        assert (await client.send(ORDERS)).outcome is SendOutcome.ACCEPTED  # first use may import
        sys.meta_path.insert(0, spy)
        try:
            for _ in range(3):
                assert (await client.send(ORDERS)).outcome is SendOutcome.ACCEPTED
        finally:
            sys.meta_path.remove(spy)
    assert spy.names == []


@pytest.mark.anyio
async def test_a_flusher_that_lost_its_lease_makes_no_request() -> None:
    """`still_mine` is asked once the body is encoded, just before the request: False, and
    nothing goes out (`not_flusher`, a retry: the batch stays in flight for the next flusher)."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(201, json=_created([1, 2, 3]))

    asked: list[bool] = []

    def lost() -> bool:
        asked.append(True)
        return False

    async with _client(handler) as client:
        result = await client.send(ORDERS, still_mine=lost)
        assert (result.outcome, result.status, result.cause) == (SendOutcome.RETRY, None, "not_flusher")
        assert requests == [] and asked == [True]
        assert (await client.send(ORDERS, still_mine=lambda: True)).outcome is SendOutcome.ACCEPTED
    assert len(requests) == 1
