"""The seam: a platform made up here, in `tests/`, runs through the real app with no change in `service/`.

"Acme" is no real shop platform. Its adapter below is everything it takes: its own payload
Structs, signature recipe (the one HMAC helper over a prefixed body), headers, topics, ping,
sample, secret and options Struct. `adapters.register` is its registry line. The test then
configures an integration on it, serves the real app on 127.0.0.1 against the fake Sendcloud,
and sends it a ping, a forged delivery, an order, an ignored topic and a bad option, and reads
its OpenAPI document.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import httpx
import msgspec
import pytest

import adapters
from adapters.base import (
    DECODE_ERRORS,
    Headers,
    PlatformOptions,
    Reason,
    TranslationError,
    header,
    hmac_sha256_base64,
    hmac_sha256_base64_matches,
    unsupported_currency,
)
from adapters.sendcloud import (
    DEFAULT_CURRENCIES,
    Address,
    Integration,
    Order,
    OrderDetails,
    OrderItem,
    PaymentDetails,
    Price,
    Status,
)
from service.app import create_app
from service.config import ConfigError, loads_config
from service.fake_sendcloud import Account, FakeSendcloud
from service.fake_sendcloud import create_app as create_fake
from tests.conftest import INTEGRATIONS, PUBLIC_KEY, SECRET_KEY, service_toml
from tests.helpers import wait_for

ACME_INTEGRATION = 4242
SECRET = "acme-test-secret"

# ---------------------------------------------------------------- the made-up platform


class _Line(msgspec.Struct):
    sku: str
    title: str
    qty: int
    unit_price: Decimal


class _ShipTo(msgspec.Struct):
    name: str
    street: str
    number: str
    postcode: str
    city: str
    country: str


class _AcmeOrder(msgspec.Struct):
    ref: int
    placed_at: datetime
    state: str
    currency: str
    total: Decimal
    ship_to: _ShipTo
    lines: list[_Line]


_DECODER = msgspec.json.Decoder(_AcmeOrder)


class AcmeOptions(PlatformOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[integrations.options]` of an Acme integration."""

    secret_fields = frozenset({"api_token"})

    tenant: str = ""
    api_token: str = ""


class AcmeAdapter:
    """Acme signs `acme:` + body, names its events `order:placed`, and pings with an event header."""

    platform = "acme"
    order_topics = frozenset({"order:placed", "order:changed"})
    headers = MappingProxyType(
        {
            "X-Acme-Signature": "Acme: base64(HMAC-SHA256(secret, `acme:` + raw body)). Missing or wrong: 401.",
            "X-Acme-Event": "Acme: the event, e.g. `order:placed`; `ping` for the unsigned ping.",
            "X-Acme-Delivery": "Acme: the delivery id; a repeat is answered `duplicate`.",
        }
    )
    ping = "Acme: any body with `X-Acme-Event: ping`, unsigned."
    options_type = AcmeOptions
    sample_secret = "sandbox-acme-secret"

    def __init__(self, currencies: frozenset[str] = DEFAULT_CURRENCIES) -> None:
        self.currencies = frozenset(currencies)

    def is_ping(self, headers: Headers, body: bytes) -> bool:
        return header(headers, "x-acme-event") == "ping"

    def verify(self, headers: Headers, body: bytes, secrets: Sequence[str]) -> bool:
        return hmac_sha256_base64_matches(b"acme:" + body, header(headers, "x-acme-signature"), secrets)

    def delivery_id(self, headers: Headers) -> str | None:
        return header(headers, "x-acme-delivery")

    def topic(self, headers: Headers) -> str | None:
        return header(headers, "x-acme-event")

    def translate(self, body: bytes, integration_id: int) -> Order:
        try:
            order = _DECODER.decode(body)
        except DECODE_ERRORS as exc:
            raise TranslationError(Reason.MALFORMED_BODY, "not an Acme order") from exc
        if order.currency not in self.currencies:
            raise unsupported_currency([order.currency], self.currencies)
        lines = [line for line in order.lines if line.qty > 0]
        if not lines:
            raise TranslationError(Reason.NO_SHIPPABLE_ITEMS, "no line with a quantity above 0")
        to = order.ship_to
        return Order(
            order_id=str(order.ref),
            order_number=f"ACME-{order.ref}",
            order_details=OrderDetails(
                integration=Integration(id=integration_id),
                status=Status(code=order.state),
                order_created_at=order.placed_at,
                order_items=[
                    OrderItem(
                        name=line.title,
                        sku=line.sku,
                        quantity=line.qty,
                        unit_price=Price(value=line.unit_price, currency=order.currency),
                        total_price=Price(value=line.unit_price * line.qty, currency=order.currency),
                    )
                    for line in lines
                ],
            ),
            payment_details=PaymentDetails(
                total_price=Price(value=order.total, currency=order.currency), status=Status(code="paid")
            ),
            shipping_address=Address(
                name=to.name,
                address_line_1=to.street,
                house_number=to.number,
                postal_code=to.postcode,
                city=to.city,
                country_code=to.country,
            ),
        )

    def sign(
        self, body: bytes, secret: str, *, topic: str | None = None, delivery_id: str | None = None
    ) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Acme-Event": topic or "order:placed",
            "X-Acme-Signature": hmac_sha256_base64(secret, b"acme:" + body),
            "X-Acme-Delivery": delivery_id or str(uuid.uuid4()),
        }

    def sample(self) -> bytes:
        return msgspec.json.encode(
            {
                "ref": 90001,
                "placed_at": "2026-03-01T10:00:00+01:00",
                "state": "new",
                "currency": "EUR",
                "total": "24.50",
                "ship_to": {
                    "name": "Test Person",
                    "street": "Teststraat",
                    "number": "12",
                    "postcode": "1234 AB",
                    "city": "Utrecht",
                    "country": "NL",
                },
                "lines": [
                    {"sku": "A-1", "title": "Mug", "qty": 2, "unit_price": "9.75"},
                    {"sku": "A-2", "title": "Gone", "qty": 0, "unit_price": "1.00"},
                ],
            }
        )


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def acme() -> Iterator[AcmeAdapter]:
    """Acme registered for one test (the registry line), removed afterwards."""
    assert adapters.register(AcmeAdapter) == "acme"
    try:
        yield AcmeAdapter()
    finally:
        adapters.unregister("acme")


ACME_TABLE = f"""
[[integrations]]
id = {ACME_INTEGRATION}
platform = "acme"
secrets = ["{SECRET}"]
[integrations.options]
tenant = "t-17"
api_token = "acme-api-token"
"""


@pytest.fixture
def acme_stack(acme: AcmeAdapter, serve: Any) -> Any:
    """The fake Sendcloud and the real service, configured with an Acme integration next to the others."""
    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset({*INTEGRATIONS, ACME_INTEGRATION}))})
    fake_server = serve(create_fake(fake))
    config = loads_config(service_toml(fake_server.url + "/api/v3") + ACME_TABLE)
    service = serve(create_app(config))
    return config, fake, service.url


def _post(url: str, body: bytes, headers: dict[str, str], platform: str = "acme") -> httpx.Response:
    return httpx.post(f"{url}/webhooks/{platform}/{ACME_INTEGRATION}", content=body, headers=headers, timeout=10)


# ---------------------------------------------------------------- the proof


def test_a_platform_defined_in_tests_runs_through_the_real_app_to_sendcloud(acme: AcmeAdapter, acme_stack: Any) -> None:
    """Ping, forged signature, order, repeat, ignored topic: each answered as DESIGN §3 says; the order
    arrives in the fake Sendcloud translated by the Acme adapter."""
    config, fake, url = acme_stack
    integration = next(i for i in config.integrations if i.id == ACME_INTEGRATION)
    assert integration.platform == "acme"
    assert integration.options == AcmeOptions(tenant="t-17", api_token="acme-api-token")
    assert "acme-api-token" not in repr(config)

    ping = _post(url, b"{}", {"Content-Type": "application/json", "X-Acme-Event": "ping"})
    assert (ping.status_code, ping.json()) == (200, {"status": "ignored", "reason": "ping"})

    body = acme.sample()
    forged = acme.sign(body, "not-the-secret")
    assert (_post(url, body, forged).status_code, _post(url, body, forged).json()["error"]) == (
        401,
        "invalid_signature",
    )
    # Shopify's recipe (no `acme:` prefix) is not Acme's: the adapter decides, not the service.
    unprefixed = {**acme.sign(body, SECRET), "X-Acme-Signature": hmac_sha256_base64(SECRET, body)}
    assert _post(url, body, unprefixed).status_code == 401

    headers = acme.sign(body, SECRET, delivery_id="acme-d-1")
    answer = _post(url, body, headers)
    assert (answer.status_code, answer.json()) == (200, {"status": "accepted"})
    assert _post(url, body, headers).json() == {"status": "duplicate"}
    other = _post(url, body, acme.sign(body, SECRET, topic="customer:created"))
    assert other.json() == {"status": "ignored", "reason": "topic"}
    # the integration is Acme's: the same delivery on another platform's URL is unknown
    assert _post(url, body, acme.sign(body, SECRET), platform="shopify").status_code == 404

    wait_for(lambda: fake.order(ACME_INTEGRATION, "90001") is not None)
    sent = fake.order(ACME_INTEGRATION, "90001").order
    assert sent["order_number"] == "ACME-90001"
    assert sent["order_details"]["integration"] == {"id": ACME_INTEGRATION}
    assert sent["order_details"]["status"] == {"code": "new"}
    assert [(i["sku"], i["quantity"], i["total_price"]) for i in sent["order_details"]["order_items"]] == [
        ("A-1", 2, {"value": 19.5, "currency": "EUR"})
    ]
    assert sent["payment_details"]["total_price"] == {"value": 24.5, "currency": "EUR"}
    assert (sent["shipping_address"]["house_number"], sent["shipping_address"]["country_code"]) == ("12", "NL")


def test_its_openapi_document_lists_the_platform_and_its_headers(acme: AcmeAdapter, acme_stack: Any) -> None:
    """`GET /openapi.json` of the app names the new platform, every header it reads, and its ping."""
    _, _, url = acme_stack
    post = httpx.get(url + "/openapi.json", timeout=10).json()["paths"]["/webhooks/{platform}/{integration_id}"]["post"]
    assert "acme" in post["parameters"][0]["schema"]["enum"]
    headers = {p["name"]: p["description"] for p in post["parameters"] if p["in"] == "header"}
    for name, description in acme.headers.items():
        assert headers[name] == description
    assert acme.ping is not None and acme.ping in post["description"]


def test_its_options_are_checked_by_its_own_struct(acme: AcmeAdapter) -> None:
    """A key Acme's options do not have is one line naming it; an unregistered platform is unknown again."""
    text = service_toml("http://127.0.0.1:9/api/v3") + ACME_TABLE.replace("tenant =", "tennant =")
    with pytest.raises(ConfigError, match=r"^unknown key integrations\[\d+\]\.options\.tennant$"):
        loads_config(text)


def test_without_registration_the_platform_is_unknown() -> None:
    """The seam is the registry: without `register`, the same config names `acme` as unknown."""
    assert "acme" not in adapters.ADAPTERS
    with pytest.raises(ConfigError, match=r'unknown platform "acme" \(known: shopify, woocommerce\)'):
        loads_config(service_toml("http://127.0.0.1:9/api/v3") + ACME_TABLE)
    with pytest.raises(ValueError, match="already registered"):
        adapters.register(type("Clash", (AcmeAdapter,), {"platform": "shopify"}))
