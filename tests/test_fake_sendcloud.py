"""`service/fake_sendcloud.py` against the batch endpoint's contract (`shared/reference/sendcloud/sendcloud.md`).

Most tests talk HTTP to the Starlette app in-process (`httpx.ASGITransport`); one runs it under a
real uvicorn on 127.0.0.1. Statuses, codes, details and pointers are the documented ones.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import get_adapter
from adapters.sendcloud import ENCODER
from service.fake_sendcloud import STILL_PROCESSING, Account, FakeSendcloud, StoredOrder, create_app
from tests.sendcloud_schema import request_examples, request_validator

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNTS = {
    "pk": Account(secret_key="sk", integration_ids=frozenset({7, 8})),
    "other": Account(secret_key="other-secret", integration_ids=frozenset({9})),
}
PARTNER_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
ORDERS_URL = "/api/v3/orders"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def basic(public_key: str = "pk", secret_key: str = "sk") -> str:
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()


def make_fake(**options: Any) -> FakeSendcloud:
    options.setdefault("accounts", ACCOUNTS)
    return FakeSendcloud(**options)


def order_json(order_id: str = "A1", integration: int = 7, order_number: str | None = None) -> dict[str, Any]:
    """A small valid order (the spec's CreateBasicOrder, reshaped)."""
    return {
        "order_id": order_id,
        "order_number": order_number or f"#{order_id}",
        "order_details": {
            "integration": {"id": integration},
            "status": {"code": "fulfilled", "message": "Fulfilled"},
            "order_created_at": "2018-02-27T10:00:00.556Z",
            "order_items": [
                {"name": "Cylinder candle", "quantity": 1, "total_price": {"value": 3.5, "currency": "EUR"}}
            ],
        },
        "payment_details": {
            "total_price": {"value": 3.5, "currency": "EUR"},
            "status": {"code": "paid", "message": "Paid"},
        },
        "shipping_address": {
            "name": "John Doe",
            "address_line_1": "Lansdown Glade",
            "house_number": "15",
            "postal_code": "5341XT",
            "city": "Oss",
            "country_code": "NL",
        },
    }


@asynccontextmanager
async def client_for(
    fake: FakeSendcloud, public_key: str = "pk", secret_key: str = "sk"
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(fake))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake", auth=httpx.BasicAuth(public_key, secret_key)
    ) as client:
        yield client


async def post(fake: FakeSendcloud, batch: Any, **kwargs: Any) -> httpx.Response:
    async with client_for(fake) as client:
        return await client.post(ORDERS_URL, json=batch, **kwargs)


def errors(response: httpx.Response) -> list[tuple[str, str, str | None]]:
    """(code, detail, pointer) of each error of a JSON:API error body."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert all(error["status"] == str(response.status_code) for error in body["errors"])
    return [(error["code"], error["detail"], error.get("source", {}).get("pointer")) for error in body["errors"]]


def stored(fake: FakeSendcloud, order_id: str, integration: int = 7) -> StoredOrder:
    found = fake.order(integration, order_id)
    assert found is not None
    return found


# ---------------------------------------------------------------- success and upsert


@pytest.mark.anyio
async def test_valid_batch_is_created_with_integer_ids_in_request_order() -> None:
    """A valid batch answers 201 with integer ids from 1, in request order, and is stored."""
    fake = make_fake()
    response = await post(fake, [order_json("B"), order_json("A", integration=8)])
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "data": [{"id": 1, "order_id": "B", "order_number": "#B"}, {"id": 2, "order_id": "A", "order_number": "#A"}]
    }
    assert stored(fake, "B").id == 1
    assert stored(fake, "A", integration=8).order == order_json("A", integration=8)
    assert fake.order(7, "A") is None


@pytest.mark.anyio
async def test_upsert_keeps_the_id_and_appends_versions() -> None:
    """Posting the same (integration, order_id) again updates in place: same id, one more version."""
    fake = make_fake()
    first = await post(fake, [order_json("A1")])
    changed = order_json("A1", order_number="#changed")
    second = await post(fake, [changed, order_json("A2")])
    assert first.json()["data"][0]["id"] == second.json()["data"][0]["id"] == 1
    assert second.json()["data"][1]["id"] == 2
    order = stored(fake, "A1")
    assert order.order == changed
    assert order.versions == [order_json("A1"), changed]


@pytest.mark.anyio
async def test_same_order_id_under_two_integrations_are_two_orders() -> None:
    """The upsert key is (integration id, order_id), not order_id alone."""
    fake = make_fake()
    response = await post(fake, [order_json("A1", integration=7), order_json("A1", integration=8)])
    assert [item["id"] for item in response.json()["data"]] == [1, 2]


@pytest.mark.anyio
async def test_same_key_twice_in_one_batch_last_wins() -> None:
    """A batch naming one order twice is accepted; both answers carry its id, the last version wins."""
    fake = make_fake()
    later = order_json("A1", order_number="#later")
    response = await post(fake, [order_json("A1"), later])
    assert response.status_code == 201
    assert [item["id"] for item in response.json()["data"]] == [1, 1]
    assert stored(fake, "A1").order == later
    assert len(stored(fake, "A1").versions) == 2


@pytest.mark.anyio
async def test_string_id_names_the_order_to_update() -> None:
    """A string `id` naming the stored order with the same order_id updates it."""
    fake = make_fake()
    await post(fake, [order_json("A1")])
    update = {**order_json("A1", order_number="#2"), "id": "1"}
    response = await post(fake, [update])
    assert response.status_code == 201
    assert response.json()["data"] == [{"id": 1, "order_id": "A1", "order_number": "#2"}]


@pytest.mark.anyio
async def test_empty_batch_is_accepted() -> None:
    """`[]` (no minItems in the spec) answers 201 with no data."""
    response = await post(make_fake(), [])
    assert (response.status_code, response.json()) == (201, {"data": []})


@pytest.mark.anyio
async def test_exactly_100_orders_are_accepted() -> None:
    """100 orders is the documented maximum and passes."""
    fake = make_fake()
    response = await post(fake, [order_json(f"A{n}") for n in range(100)])
    assert response.status_code == 201
    assert len(fake.orders) == 100


@pytest.mark.anyio
async def test_spec_request_examples_are_accepted() -> None:
    """Every request example of the published spec is accepted (UpdateBatchOrders after creating its ids)."""
    fake = FakeSendcloud.sandbox(rate_limit=False)
    examples = request_examples()
    update = examples.pop("UpdateBatchOrders")
    async with client_for(fake, "sandbox", "sandbox") as client:
        for name, batch in examples.items():
            response = await client.post(ORDERS_URL, json=batch)
            assert response.status_code == 201, (name, response.text)
        response = await client.post(ORDERS_URL, json=update)
        assert response.status_code == 400  # its ids 669 and 1337 do not exist here
        # the same orders exist from the create examples: name them by the ids the fake gave them
        renamed = [
            {**order, "id": str(stored(fake, order["order_id"], order["order_details"]["integration"]["id"]).id)}
            for order in update
        ]
        response = await client.post(ORDERS_URL, json=renamed)
        assert response.status_code == 201, response.text


@pytest.mark.anyio
async def test_translated_orders_are_accepted_and_match_the_published_schema() -> None:
    """A batch of adapter-translated fixtures is valid for the fake and for the spec's JSON Schema."""
    sources = [
        ("shopify", "shopify/shopify_python_api__order_1001_us_authorized_3items__rest_envelope.json"),
        ("shopify", "shopify/order_bridge__eur_nl_local_pickup_removed_line_gift_card.json"),
        ("woocommerce", "woocommerce/wc_rest_docs__v3_order_727_processing_us_flat_rate.json"),
        ("woocommerce", "woocommerce/order_bridge__eur_nl_house_number_meta_pickup_location.json"),
    ]
    orders = [get_adapter(platform).translate((FIXTURES / name).read_bytes(), 7) for platform, name in sources]
    body = ENCODER.encode(orders)
    request_validator().validate(json.loads(body))
    fake = make_fake()
    async with client_for(fake) as client:
        response = await client.post(ORDERS_URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert len(fake.orders) == len({order.order_id for order in orders})


@pytest.mark.anyio
async def test_handle_post_works_without_http() -> None:
    """The fake is usable in-process without the app: `handle_post` returns a Reply."""
    fake = make_fake()
    reply = await fake.handle_post(msgspec.json.encode([order_json()]), authorization=basic())
    assert reply.status == 201
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["data"][0]["id"] == 1


@pytest.mark.anyio
async def test_sandbox_account_owns_any_integration() -> None:
    """The sandbox fake authenticates sandbox:sandbox and accepts any integration id."""
    fake = FakeSendcloud.sandbox()
    async with client_for(fake, "sandbox", "sandbox") as client:
        response = await client.post(ORDERS_URL, json=[order_json("A1", integration=123456)])
    assert response.status_code == 201
    assert fake.order(123456, "A1") is not None


# ---------------------------------------------------------------- auth, partner header, body format


@pytest.mark.anyio
async def test_missing_credentials_answer_401_no_credentials() -> None:
    """No Authorization header → 401 "No credentials" / "Authentication credentials were not provided."."""
    fake = make_fake()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(fake)), base_url="http://fake") as client:
        response = await client.post(ORDERS_URL, json=[order_json()])
    assert response.status_code == 401
    assert response.json() == {
        "errors": [
            {
                "status": "401",
                "code": "authentication_failed",
                "title": "No credentials",
                "detail": "Authentication credentials were not provided.",
            }
        ]
    }
    assert fake.orders == {}
    assert fake.requests[0].account is None


@pytest.mark.parametrize(
    "authorization",
    [
        basic("pk", "wrong"),
        basic("unknown", "sk"),
        basic("pk", ""),
        "Basic " + base64.b64encode(b"pk-without-colon").decode(),
        "Basic %%%not-base64",
        "Bearer some-token",
    ],
)
@pytest.mark.anyio
async def test_wrong_credentials_answer_401_invalid_username_password(authorization: str) -> None:
    """Wrong secret, unknown public key or a malformed header → the documented 401 body."""
    fake = make_fake()
    reply = await fake.handle_post(msgspec.json.encode([order_json()]), authorization=authorization)
    assert reply.status == 401
    assert reply.json()["errors"] == [
        {
            "status": "401",
            "code": "authentication_failed",
            "title": "Invalid username/password.",
            "detail": "The username or password provided is incorrect. "
            "Please make a request with the valid credentials.",
        }
    ]
    assert fake.orders == {}


@pytest.mark.anyio
async def test_an_account_cannot_use_another_accounts_integration() -> None:
    """Integration 7 belongs to "pk": "other" gets "Integration with id 7 does not exist"."""
    fake = make_fake()
    async with client_for(fake, "other", "other-secret") as client:
        response = await client.post(ORDERS_URL, json=[order_json(integration=9), order_json(integration=7)])
    assert response.status_code == 400
    assert errors(response) == [
        ("invalid", "Integration with id 7 does not exist", "/data/attributes/[1]/order_details/integration/id")
    ]


@pytest.mark.anyio
async def test_valid_partner_header_is_accepted_and_recorded() -> None:
    """A UUID in Sendcloud-Partner-Id passes and is recorded."""
    fake = make_fake()
    response = await post(fake, [order_json()], headers={"Sendcloud-Partner-Id": PARTNER_ID})
    assert response.status_code == 201
    assert fake.requests[0].partner_id == PARTNER_ID


@pytest.mark.parametrize("value", ["", "partner", PARTNER_ID.replace("-", ""), "{" + PARTNER_ID + "}"])
@pytest.mark.anyio
async def test_invalid_partner_header_answers_400_with_header_source(value: str) -> None:
    """A Sendcloud-Partner-Id that is not a canonical UUID → 400 with `source.header`."""
    fake = make_fake()
    response = await post(fake, [order_json()], headers={"Sendcloud-Partner-Id": value})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["code"], error["source"]) == ("invalid", {"header": "Sendcloud-Partner-Id"})
    assert fake.orders == {}


@pytest.mark.parametrize("body", [{"order_id": "A1"}, "text", 5, None])
@pytest.mark.anyio
async def test_body_not_a_list_answers_wrong_format(body: Any) -> None:
    """A JSON body that is not an array → 400 non_field_errors "Wrong format", no source."""
    async with client_for(make_fake()) as client:
        response = await client.post(
            ORDERS_URL, content=msgspec.json.encode(body), headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "status": "400",
                "code": "non_field_errors",
                "title": "Wrong format",
                "detail": "Wrong request format, expected list of objects",
            }
        ]
    }


@pytest.mark.parametrize("body", [b"", b"[", b"not json", b"\xff\xfe", b"[1e400]", b"[" * 100_000 + b"]" * 100_000])
@pytest.mark.anyio
async def test_malformed_json_answers_400_parse_error(body: bytes) -> None:
    """A body that is not JSON → 400 parse_error, never a 500."""
    fake = make_fake()
    async with client_for(fake) as client:
        response = await client.post(ORDERS_URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert [code for code, _, _ in errors(response)] == ["parse_error"]
    assert fake.requests[0].body is None


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.anyio
async def test_body_not_sent_as_json_answers_415(content_type: str | None) -> None:
    """A POST without `Content-Type: application/json` → 415 (stricter than documented)."""
    fake = make_fake()
    headers = {} if content_type is None else {"content-type": content_type}
    async with client_for(fake) as client:
        response = await client.post(ORDERS_URL, content=msgspec.json.encode([order_json()]), headers=headers)
    assert response.status_code == 415
    assert [code for code, _, _ in errors(response)] == ["unsupported_media_type"]
    assert fake.orders == {}


@pytest.mark.anyio
async def test_json_content_type_with_charset_is_accepted() -> None:
    """`application/json; charset=utf-8` is JSON."""
    fake = make_fake()
    async with client_for(fake) as client:
        response = await client.post(
            ORDERS_URL,
            content=msgspec.json.encode([order_json()]),
            headers={"content-type": "Application/JSON; charset=utf-8"},
        )
    assert response.status_code == 201


@pytest.mark.anyio
async def test_101_orders_answer_batch_size_error() -> None:
    """101 orders → 400 invalid "Orders list should have at most 100 items, not 101" at /data/attributes/."""
    fake = make_fake()
    response = await post(fake, [order_json(f"A{n}") for n in range(101)])
    assert response.status_code == 400
    assert errors(response) == [("invalid", "Orders list should have at most 100 items, not 101", "/data/attributes/")]
    assert fake.orders == {}


# ---------------------------------------------------------------- order validation


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def change(order: dict[str, Any]) -> None:
        *parents, name = path.split(".")
        node: Any = order
        for parent in parents:
            node = node[int(parent)] if parent.isdigit() else node[parent]
        del node[name]

    return change


def _setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(order: dict[str, Any]) -> None:
        *parents, name = path.split(".")
        node: Any = order
        for parent in parents:
            node = node[int(parent)] if parent.isdigit() else node[parent]
        if isinstance(node, list):
            node[int(name)] = value
        else:
            node[name] = value

    return change


INVALID_ORDERS = [
    ("missing order_id", _without("order_id"), "/order_id", "Field required"),
    ("missing integration", _without("order_details.integration"), "/order_details/integration", "Field required"),
    (
        "missing address field",
        _without("shipping_address.city"),
        "/shipping_address/city",
        "Field required",
    ),
    (
        "quantity 0",
        _setting("order_details.order_items.0.quantity", 0),
        "/order_details/order_items/0/quantity",
        "Input should be greater than 0",
    ),
    (
        "quantity as a string",
        _setting("order_details.order_items.0.quantity", "1"),
        "/order_details/order_items/0/quantity",
        "Input should be a valid integer",
    ),
    ("order_number not a string", _setting("order_number", 1001), "/order_number", "Input should be a valid string"),
    ("integer id", _setting("id", 669), "/id", "Input should be a valid string"),
    ("empty order_id", _setting("order_id", ""), "/order_id", "String should have at least 1 character"),
    ("unknown field", _setting("colour", "red"), "/colour", "Extra inputs are not permitted"),
    (
        "read-only created_at",
        _setting("created_at", "2024-01-01T00:00:00Z"),
        "/created_at",
        "Extra inputs are not permitted",
    ),
    (
        "date-time without offset",
        _setting("order_details.order_created_at", "2018-02-27T10:00:00"),
        "/order_details/order_created_at",
        "Input should have timezone info",
    ),
    (
        "date-time not a date",
        _setting("order_details.order_created_at", "yesterday"),
        "/order_details/order_created_at",
        "Input should be a valid datetime",
    ),
    (
        "items not a list",
        _setting("order_details.order_items", {}),
        "/order_details/order_items",
        "Input should be a valid list",
    ),
    (
        "price value as a string",
        _setting("payment_details.total_price.value", "3.50"),
        "/payment_details/total_price/value",
        "Input should be a valid number",
    ),
    (
        "currency not allowed",
        _setting("payment_details.total_price.currency", "CAD"),
        "/payment_details/total_price/currency",
        "Input should be 'EUR', 'GBP' or 'USD'",
    ),
    (
        "item currency not allowed",
        _setting("order_details.order_items.0.total_price.currency", "eur"),
        "/order_details/order_items/0/total_price/currency",
        "Input should be 'EUR', 'GBP' or 'USD'",
    ),
    (
        "lower-case country code",
        _setting("shipping_address.country_code", "nl"),
        "/shipping_address/country_code",
        "String should match pattern '^[A-Z]{2}\\Z'",
    ),
    (
        "foreign integration",
        _setting("order_details.integration.id", 9),
        "/order_details/integration/id",
        "Integration with id 9 does not exist",
    ),
    ("unknown id", _setting("id", "42"), "/id", "Order with id 42 does not exist"),
]


@pytest.mark.parametrize(
    ("change", "path", "detail"),
    [pytest.param(change, path, detail, id=name) for name, change, path, detail in INVALID_ORDERS],
)
@pytest.mark.anyio
async def test_invalid_order_answers_400_with_pointer_and_detail(
    change: Callable[[dict[str, Any]], None], path: str, detail: str
) -> None:
    """Each kind of invalid order gets the documented code, a Pydantic-like detail and its pointer."""
    fake = make_fake()
    bad = order_json("A2")
    change(bad)
    response = await post(fake, [order_json("A1"), bad])
    assert response.status_code == 400
    assert errors(response) == [("invalid", detail, f"/data/attributes/[1]{path}")]
    assert fake.orders == {}


@pytest.mark.anyio
async def test_element_not_an_object_points_at_the_element() -> None:
    """An array element that is not an object → pointer /data/attributes/[N]."""
    response = await post(make_fake(), [order_json(), 5])
    assert errors(response) == [("invalid", "Input should be a valid dictionary", "/data/attributes/[1]")]


@pytest.mark.anyio
async def test_configured_currencies_replace_the_default_set() -> None:
    """`currencies` decides which Price currencies pass."""
    fake = make_fake(currencies=frozenset({"CAD"}))
    cad = order_json("A1")
    _setting("payment_details.total_price.currency", "CAD")(cad)
    _setting("order_details.order_items.0.total_price.currency", "CAD")(cad)
    assert (await post(fake, [cad])).status_code == 201
    response = await post(fake, [order_json("A2")])
    assert errors(response) == [
        ("invalid", "Input should be 'CAD'", "/data/attributes/[0]/payment_details/total_price/currency"),
        ("invalid", "Input should be 'CAD'", "/data/attributes/[0]/order_details/order_items/0/total_price/currency"),
    ]


@pytest.mark.anyio
async def test_order_id_cannot_be_changed_through_id() -> None:
    """An `id` naming a stored order with another order_id → "Order id X cannot be changed" at order_id."""
    fake = make_fake()
    await post(fake, [order_json("abc-123")])
    response = await post(fake, [{**order_json("xyz-789"), "id": "1"}])
    assert response.status_code == 400
    assert errors(response) == [("invalid", "Order id abc-123 cannot be changed", "/data/attributes/[0]/order_id")]
    assert fake.order(7, "xyz-789") is None
    assert len(stored(fake, "abc-123").versions) == 1


@pytest.mark.anyio
async def test_several_invalid_orders_get_one_error_each() -> None:
    """All errors of the batch come back together, one pointer per invalid order, in batch order."""
    fake = make_fake()
    no_id = order_json("A0")
    del no_id["order_id"]
    zero = order_json("A2")
    zero["order_details"]["order_items"][0]["quantity"] = 0
    foreign = order_json("A3", integration=9)
    response = await post(fake, [no_id, order_json("A1"), zero, foreign])
    assert response.status_code == 400
    assert errors(response) == [
        ("invalid", "Field required", "/data/attributes/[0]/order_id"),
        ("invalid", "Input should be greater than 0", "/data/attributes/[2]/order_details/order_items/0/quantity"),
        ("invalid", "Integration with id 9 does not exist", "/data/attributes/[3]/order_details/integration/id"),
    ]


@pytest.mark.anyio
async def test_batch_is_all_or_nothing() -> None:
    """A batch of 3 with one bad order stores nothing; the 2 good ones alone are then stored."""
    fake = make_fake()
    bad = order_json("A2")
    bad["order_details"]["order_items"][0]["quantity"] = 0
    rejected = await post(fake, [order_json("A1"), bad, order_json("A3")])
    assert rejected.status_code == 400
    assert [pointer for _, _, pointer in errors(rejected)] == [
        "/data/attributes/[1]/order_details/order_items/0/quantity"
    ]
    assert fake.orders == {}
    accepted = await post(fake, [order_json("A1"), order_json("A3")])
    assert accepted.status_code == 201
    assert [item["id"] for item in accepted.json()["data"]] == [1, 2]
    assert set(fake.orders) == {(7, "A1"), (7, "A3")}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _order_with_garbage(draw: st.DrawFn) -> Any:
    order = order_json()
    paths = [
        "order_id",
        "order_details",
        "order_details.order_items",
        "order_details.order_items.0",
        "order_details.order_items.0.total_price",
        "payment_details.total_price.value",
        "shipping_address",
        "id",
    ]
    _setting(draw(st.sampled_from(paths)), draw(JSON_VALUES))(order)
    return order


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(JSON_VALUES, st.lists(st.one_of(JSON_VALUES, st.composite(_order_with_garbage)()), max_size=3)))
def test_any_json_body_answers_201_or_400_never_500(body: Any) -> None:
    """Whatever JSON a client sends, the fake answers 201 or a 400 error body, never an exception."""
    fake = FakeSendcloud.sandbox(rate_limit=False)
    reply = asyncio.run(fake.handle_post(msgspec.json.encode(body), authorization=basic("sandbox", "sandbox")))
    assert reply.status in {201, 400}
    answer = reply.json()
    if reply.status == 400:
        assert all(error["code"] and error["detail"] for error in answer["errors"])
    else:
        assert len(answer["data"]) == len(body)


# ---------------------------------------------------------------- GET


@pytest.mark.anyio
async def test_get_list_shows_string_ids_newest_first_with_filters() -> None:
    """GET /orders lists the account's orders with string ids, newest first, filtered by integration and order_id."""
    fake = make_fake()
    await post(fake, [order_json("A1"), order_json("B2", integration=8), order_json("c3")])
    async with client_for(fake) as client:
        everything = await client.get(ORDERS_URL)
        by_integration = await client.get(ORDERS_URL, params={"integration": "8"})
        both = await client.get(ORDERS_URL, params={"integration": "7,8"})
        by_order_id = await client.get(ORDERS_URL, params={"order_id": "C3"})
        foreign = await client.get(ORDERS_URL, params={"integration": "9"})
    assert everything.status_code == 200
    assert [order["id"] for order in everything.json()["data"]] == ["3", "2", "1"]
    assert everything.json()["data"][2] == {"id": "1", **order_json("A1")}
    assert [order["order_id"] for order in by_integration.json()["data"]] == ["B2"]
    assert len(both.json()["data"]) == 3
    assert [order["id"] for order in by_order_id.json()["data"]] == ["3"]
    assert foreign.status_code == 400
    [error] = foreign.json()["errors"]
    assert (error["code"], error["source"]) == ("invalid_choice", {"parameter": "integration"})


@pytest.mark.anyio
async def test_get_list_hides_other_accounts_orders() -> None:
    """An account only sees orders of its own integrations."""
    fake = make_fake()
    await post(fake, [order_json("A1")])
    async with client_for(fake, "other", "other-secret") as client:
        response = await client.get(ORDERS_URL)
    assert response.json() == {"data": []}


@pytest.mark.anyio
async def test_get_one_order_and_404() -> None:
    """GET /orders/{id} gives {"data": order} with a string id; an unknown id the documented 404."""
    fake = make_fake()
    await post(fake, [order_json("A1")])
    async with client_for(fake) as client:
        found = await client.get(f"{ORDERS_URL}/1")
        missing = await client.get(f"{ORDERS_URL}/2")
        unauthenticated = await client.get(f"{ORDERS_URL}/1", auth=httpx.BasicAuth("pk", "nope"))
    assert found.status_code == 200
    assert found.json() == {"data": {"id": "1", **order_json("A1")}}
    assert missing.status_code == 404
    assert missing.json() == {
        "errors": [
            {
                "status": "404",
                "code": "not_found",
                "title": "Not found",
                "detail": "The order could not be found with the search criteria given",
            }
        ]
    }
    assert unauthenticated.status_code == 401


@pytest.mark.anyio
async def test_unknown_routes_and_methods_answer_json_errors() -> None:
    """Unknown paths give a JSON 404, wrong methods a JSON 405."""
    async with client_for(make_fake()) as client:
        missing = await client.get("/api/v3/nothing")
        not_an_id = await client.get(f"{ORDERS_URL}/abc")
        wrong_method = await client.delete(ORDERS_URL)
    assert (missing.status_code, not_an_id.status_code, wrong_method.status_code) == (404, 404, 405)
    assert missing.json()["errors"][0]["code"] == "not_found"
    assert wrong_method.headers["content-type"] == "application/json"


# ---------------------------------------------------------------- concurrency


@pytest.mark.anyio
async def test_concurrent_posts_sharing_an_order_conflict() -> None:
    """Two concurrent POSTs sharing an order: one 201, the other the documented 400 at /data."""
    fake = make_fake(processing_delay=0.2)
    async with client_for(fake) as client:
        first, second = await asyncio.gather(
            client.post(ORDERS_URL, json=[order_json("A1"), order_json("A2")]),
            client.post(ORDERS_URL, json=[order_json("A3"), order_json("A1")]),
        )
    assert sorted([first.status_code, second.status_code]) == [201, 400]
    loser = first if first.status_code == 400 else second
    assert errors(loser) == [("invalid", STILL_PROCESSING, "/data")]
    assert len(stored(fake, "A1").versions) == 1
    assert len(fake.orders) == 2


@pytest.mark.anyio
async def test_concurrent_posts_with_disjoint_orders_both_succeed() -> None:
    """Two concurrent POSTs with different orders are both accepted, with distinct ids."""
    fake = make_fake(processing_delay=0.2)
    async with client_for(fake) as client:
        first, second = await asyncio.gather(
            client.post(ORDERS_URL, json=[order_json("A1")]),
            client.post(ORDERS_URL, json=[order_json("A2")]),
        )
    assert (first.status_code, second.status_code) == (201, 201)
    assert {first.json()["data"][0]["id"], second.json()["data"][0]["id"]} == {1, 2}


@pytest.mark.anyio
async def test_order_is_released_after_processing() -> None:
    """Once a POST is answered, its orders can be posted again."""
    fake = make_fake(processing_delay=0.05)
    async with client_for(fake) as client:
        assert (await client.post(ORDERS_URL, json=[order_json("A1")])).status_code == 201
        assert (await client.post(ORDERS_URL, json=[order_json("A1")])).status_code == 201


@pytest.mark.anyio
async def test_cancelled_post_releases_its_orders_and_stores_nothing() -> None:
    """A POST cancelled while processing stores nothing and frees its orders."""
    fake = make_fake(processing_delay=5.0)
    body = msgspec.json.encode([order_json("A1")])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fake.handle_post(body, authorization=basic()), timeout=0.05)
    assert fake.orders == {}
    assert fake.requests[0].status is None
    fake.processing_delay = 0.0
    assert (await fake.handle_post(body, authorization=basic())).status == 201


# ---------------------------------------------------------------- rate limit


@pytest.mark.anyio
async def test_16th_fast_post_is_throttled_and_tokens_return() -> None:
    """15 POSTs in the same instant pass, the 16th is 429 and stores nothing; a second later one passes."""
    clock = FakeClock()
    fake = make_fake(clock=clock)
    async with client_for(fake) as client:
        statuses = [(await client.post(ORDERS_URL, json=[order_json(f"A{n}")])).status_code for n in range(16)]
        assert statuses == [201] * 15 + [429]
        throttled = await client.post(ORDERS_URL, json=[order_json("late")])
        assert fake.order(7, "A15") is None
        clock.advance(1 / 15)
        assert (await client.post(ORDERS_URL, json=[order_json("late")])).status_code == 201
    assert throttled.status_code == 429
    assert "retry-after" not in throttled.headers
    assert errors(throttled) == [("throttled", "Request was throttled.", None)]
    assert fake.count_429() == 2


@pytest.mark.anyio
async def test_minute_bucket_limits_sustained_rate() -> None:
    """With 5 requests per minute, the 6th POST is 429 even after the burst refills; 12 s later one passes."""
    clock = FakeClock()
    fake = make_fake(clock=clock, requests_per_minute=5)
    async with client_for(fake) as client:
        statuses = []
        for n in range(6):
            statuses.append((await client.post(ORDERS_URL, json=[order_json(f"A{n}")])).status_code)
            clock.advance(1.0)
        assert statuses == [201] * 5 + [429]
        clock.advance(12.0 - 6.0)  # the minute bucket refills one token each 12 s
        assert (await client.post(ORDERS_URL, json=[order_json("A6")])).status_code == 201
        assert (await client.post(ORDERS_URL, json=[order_json("A7")])).status_code == 429


@pytest.mark.anyio
async def test_throttling_comes_before_validation_and_is_per_account() -> None:
    """A throttled invalid batch gets 429, not 400; another account still has its tokens."""
    clock = FakeClock()
    fake = make_fake(clock=clock, burst_per_second=1)
    async with client_for(fake) as client:
        assert (await client.post(ORDERS_URL, json=[order_json()])).status_code == 201
        assert (await client.post(ORDERS_URL, json={"not": "a list"})).status_code == 429
    async with client_for(fake, "other", "other-secret") as other:
        assert (await other.post(ORDERS_URL, json=[order_json(integration=9)])).status_code == 201


@pytest.mark.anyio
async def test_rejected_posts_still_use_tokens_but_429s_do_not() -> None:
    """A 400 consumes a token (it reached the API); a 429 does not."""
    clock = FakeClock()
    fake = make_fake(clock=clock, burst_per_second=2)
    async with client_for(fake) as client:
        assert (await client.post(ORDERS_URL, json={})).status_code == 400
        assert (await client.post(ORDERS_URL, json=[order_json()])).status_code == 201
        assert (await client.post(ORDERS_URL, json=[order_json()])).status_code == 429
        clock.advance(0.5)  # exactly one token back: the 429 above took none
        assert (await client.post(ORDERS_URL, json=[order_json()])).status_code == 201


@pytest.mark.anyio
async def test_retry_after_is_sent_only_when_configured() -> None:
    """`retry_after_on_429` adds a Retry-After header to the 429."""
    fake = make_fake(clock=FakeClock(), burst_per_second=1, retry_after_on_429=2.0)
    async with client_for(fake) as client:
        await client.post(ORDERS_URL, json=[order_json()])
        throttled = await client.post(ORDERS_URL, json=[order_json()])
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "2"


@pytest.mark.anyio
async def test_rate_limit_can_be_switched_off() -> None:
    """`rate_limit=False`: 30 POSTs in one instant all pass."""
    fake = make_fake(clock=FakeClock(), rate_limit=False)
    async with client_for(fake) as client:
        statuses = {(await client.post(ORDERS_URL, json=[order_json(f"A{n}")])).status_code for n in range(30)}
    assert statuses == {201}


# ---------------------------------------------------------------- fault injection and records


@pytest.mark.anyio
async def test_fail_next_answers_the_status_then_recovers() -> None:
    """`fail_next(503, times=2, retry_after=1.5)`: two JSON:API 503s with Retry-After, nothing stored, then normal."""
    fake = make_fake()
    fake.fail_next(503, times=2, retry_after=1.5)
    async with client_for(fake) as client:
        answers = [await client.post(ORDERS_URL, json=[order_json()]) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [503, 503, 201]
    assert answers[0].headers["retry-after"] == "1.5"
    assert answers[0].json()["errors"][0]["status"] == "503"
    assert len(stored(fake, "A1").versions) == 1
    assert fake.statuses() == [503, 503, 201]
    assert fake.requests[0].account == "pk"


@pytest.mark.anyio
async def test_fail_next_with_raw_body_and_429() -> None:
    """A raw body is sent as given; an injected 429 counts in `count_429`."""
    fake = make_fake()
    fake.fail_next(502, body=b"<html>Bad gateway</html>", content_type="text/html")
    fake.fail_next(429)
    async with client_for(fake) as client:
        gateway = await client.post(ORDERS_URL, json=[order_json()])
        throttled = await client.post(ORDERS_URL, json=[order_json()])
    assert (gateway.status_code, gateway.text, gateway.headers["content-type"]) == (
        502,
        "<html>Bad gateway</html>",
        "text/html",
    )
    assert throttled.status_code == 429
    assert "retry-after" not in throttled.headers
    assert fake.count_429() == 1
    assert fake.orders == {}


def test_fail_next_rejects_a_status_that_is_not_an_answer() -> None:
    """`fail_next` refuses statuses outside 200-599."""
    with pytest.raises(ValueError, match="between 200 and 599"):
        make_fake().fail_next(100)


@pytest.mark.anyio
async def test_delay_next_holds_the_answer_for_client_timeouts() -> None:
    """`delay_next(0.3)`: the next POST waits 0.3 s (a client timing out sees no answer), the one after does not."""
    fake = make_fake()
    fake.delay_next(0.3)
    body = msgspec.json.encode([order_json()])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fake.handle_post(body, authorization=basic()), timeout=0.05)
    assert fake.orders == {}
    started = time.monotonic()
    assert (await fake.handle_post(body, authorization=basic())).status == 201
    assert time.monotonic() - started < 0.2


@pytest.mark.anyio
async def test_delayed_post_is_handled_after_the_delay() -> None:
    """A delayed POST that is awaited to the end is answered normally."""
    fake = make_fake()
    fake.delay_next(0.1)
    started = time.monotonic()
    response = await post(fake, [order_json()])
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.1


@pytest.mark.anyio
async def test_every_post_is_recorded() -> None:
    """Accepted and rejected POSTs are recorded with time, account, status, body and order count."""
    clock = FakeClock()
    fake = make_fake(clock=clock)
    async with client_for(fake) as client:
        await client.post(ORDERS_URL, json=[order_json("A1"), order_json("A2")])
        clock.advance(1)
        await client.post(ORDERS_URL, json={"x": 1})
        await client.post(ORDERS_URL, json=[], auth=httpx.BasicAuth("pk", "wrong"))
    first, second, third = fake.requests
    assert (first.time, first.account, first.status, first.order_count) == (1000.0, "pk", 201, 2)
    assert first.body == [order_json("A1"), order_json("A2")]
    assert (second.time, second.status, second.body, second.order_count) == (1001.0, 400, {"x": 1}, 0)
    assert (third.account, third.status) == (None, 401)


# ---------------------------------------------------------------- real HTTP


@pytest.fixture
def served_fake() -> Iterator[tuple[FakeSendcloud, str]]:
    """The fake under a real uvicorn on 127.0.0.1 (a free port), in a thread; stopped on teardown."""
    fake = make_fake()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(fake), lifespan="off", ws="none", log_level="warning", access_log=False)
    # uvicorn 0.54 installs signal handlers only in the main thread (Server.capture_signals): none here.
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_fake_works_over_real_http(served_fake: tuple[FakeSendcloud, str]) -> None:
    """Over uvicorn and a real socket: a batch is created (201) and can be read back with GET."""
    fake, base_url = served_fake
    with httpx.Client(base_url=base_url, auth=httpx.BasicAuth("pk", "sk"), timeout=5) as client:
        created = client.post(ORDERS_URL, json=[order_json("A1"), order_json("A2")])
        listed = client.get(ORDERS_URL, params={"order_id": "A2"})
        unauthenticated = httpx.post(f"{base_url}{ORDERS_URL}", json=[], timeout=5)
    assert created.status_code == 201
    assert created.json()["data"] == [
        {"id": 1, "order_id": "A1", "order_number": "#A1"},
        {"id": 2, "order_id": "A2", "order_number": "#A2"},
    ]
    assert [order["id"] for order in listed.json()["data"]] == ["2"]
    assert unauthenticated.status_code == 401
    assert stored(fake, "A2").order == order_json("A2")


def test_stored_orders_are_independent_copies() -> None:
    """Each accepted version is its own parsed JSON: later posts do not alter earlier versions."""
    fake = make_fake()
    first = order_json("A1")
    asyncio.run(fake.handle_post(msgspec.json.encode([first]), authorization=basic()))
    second = copy.deepcopy(first)
    second["order_number"] = "#2"
    asyncio.run(fake.handle_post(msgspec.json.encode([second]), authorization=basic()))
    assert [version["order_number"] for version in stored(fake, "A1").versions] == ["#A1", "#2"]


def test_post_whose_client_timed_out_is_still_handled(served_fake: tuple[FakeSendcloud, str]) -> None:
    """Over real HTTP, `delay_next` makes the client time out, yet the batch is stored after the delay."""
    fake, base_url = served_fake
    fake.delay_next(0.5)
    with (
        httpx.Client(base_url=base_url, auth=httpx.BasicAuth("pk", "sk"), timeout=0.1) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post(ORDERS_URL, json=[order_json("A1")])
    deadline = time.monotonic() + 5
    while fake.order(7, "A1") is None:
        assert time.monotonic() < deadline, "the timed-out POST was never handled"
        time.sleep(0.02)
    assert fake.statuses() == [201]
