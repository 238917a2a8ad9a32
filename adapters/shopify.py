"""Shopify: `orders/*` webhooks (the REST Admin `Order` resource) → Sendcloud orders.

The payload Structs below decode only the fields the translation uses; msgspec skips the rest
without building them, which is what makes translation cheaper than a plain decode to a dict.
Ids are Python ints (exact above 2^53); money is `Decimal`, from strings or numbers.

Money: Shopify sends shop money in the plain fields and both shop and presentment (buyer)
money in the `*_set` twins. The shop currency is used when Sendcloud allows it, else the
presentment currency, else the order is refused with `unsupported_currency`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec

from adapters.address import build_address
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
    Costs,
    CustomerDetails,
    DateTimeTz,
    Integration,
    Measurement,
    Order,
    OrderDetails,
    OrderItem,
    PaymentDetails,
    Price,
    ShippingDetails,
    Status,
    Weight,
)
from adapters.units import (
    MAX_AMOUNT,
    ZERO,
    PlatformId,
    Quantity,
    amount,
    costs_value,
    full_name,
    grams_to_kg,
    text,
    unescaped,
)

__all__ = ["ShopifyAdapter", "ShopifyOptions"]

_SAMPLE = Path(__file__).parent / "samples" / "shopify.json"

#: Shipping-line markers of a local pickup. Shopify's REST order has no single pickup flag; older
#: API versions fill `delivery_category`, and pickup lines carry a pickup code (inferred from
#: public samples, see tests/fixtures/SOURCES.md).
_PICKUP_MARKERS = frozenset({"pickup", "pick-up", "pick up", "local_pickup", "local pickup", "in-store pickup"})


# ---------------------------------------------------------------- payload


class _Payload(msgspec.Struct, gc=False):
    """Base of the payload Structs: unknown fields are ignored."""


class _Money(_Payload):
    amount: Decimal | None = None
    currency_code: str | None = None


class _MoneySet(_Payload):
    shop_money: _Money | None = None
    presentment_money: _Money | None = None


#: A `*_set` object (`{"shop_money": ..., "presentment_money": ...}`) left undecoded: it is only
#: read when the presentment currency is used, or a plain shop-money field is missing.
MoneySetRaw = msgspec.Raw
_NO_SET = msgspec.Raw(b"null")
_MONEY_SET_DECODER = msgspec.json.Decoder(_MoneySet | None)


class _Address(_Payload):
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    zip: str | None = None
    province_code: str | None = None
    country_code: str | None = None
    phone: str | None = None


class _DiscountAllocation(_Payload):
    amount: Decimal | None = None
    amount_set: MoneySetRaw = _NO_SET


class _Property(_Payload):
    name: str | None = None
    value: Any = None


class _LineItem(_Payload):
    id: PlatformId | None = None
    product_id: PlatformId | None = None
    variant_id: PlatformId | None = None
    name: str | None = None
    title: str | None = None
    sku: str | None = None
    quantity: Quantity = 0
    current_quantity: Quantity | None = None
    price: Decimal | None = None
    price_set: MoneySetRaw = _NO_SET
    total_discount: Decimal | None = None
    total_discount_set: MoneySetRaw = _NO_SET
    discount_allocations: list[_DiscountAllocation] | None = None
    grams: float | None = None
    requires_shipping: bool | None = None
    properties: list[_Property] | None = None


class _ShippingLine(_Payload):
    title: str | None = None
    code: str | None = None
    delivery_category: str | None = None
    price: Decimal | None = None
    price_set: MoneySetRaw = _NO_SET


class _Customer(_Payload):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class _Order(_Payload):
    id: PlatformId
    created_at: DateTimeTz
    line_items: list[_LineItem]
    name: str | None = None
    order_number: PlatformId | None = None
    updated_at: DateTimeTz | None = None
    cancelled_at: datetime | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    email: str | None = None
    contact_email: str | None = None
    phone: str | None = None
    note: str | None = None
    tags: str | None = None
    currency: str | None = None
    presentment_currency: str | None = None
    total_price: Decimal | None = None
    total_price_set: MoneySetRaw = _NO_SET
    subtotal_price: Decimal | None = None
    subtotal_price_set: MoneySetRaw = _NO_SET
    total_tax: Decimal | None = None
    total_tax_set: MoneySetRaw = _NO_SET
    total_discounts: Decimal | None = None
    total_discounts_set: MoneySetRaw = _NO_SET
    total_shipping_price_set: MoneySetRaw = _NO_SET
    total_weight: float | None = None
    shipping_lines: list[_ShippingLine] | None = None
    shipping_address: _Address | None = None
    billing_address: _Address | None = None
    customer: _Customer | None = None


class _Envelope(_Payload):
    """A REST response (`{"order": {...}}`), accepted too: same order, one level down."""

    order: _Order


_ORDER_DECODER = msgspec.json.Decoder(_Order)
_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)


def _decode(body: bytes) -> _Order:
    try:
        return _ORDER_DECODER.decode(body)
    except DECODE_ERRORS as exc:
        first = exc
    try:
        return _ENVELOPE_DECODER.decode(body).order
    except DECODE_ERRORS:
        pass
    raise TranslationError(Reason.MALFORMED_BODY, f"not a Shopify order: {first}") from None


# ---------------------------------------------------------------- money


class _MoneyPicker:
    """Reads amounts in the one currency chosen for the whole order."""

    __slots__ = ("currency", "presentment")

    def __init__(self, order: _Order, allowed: frozenset[str]) -> None:
        shop = (order.currency or "").upper()
        presentment = (order.presentment_currency or _presentment_code(order.total_price_set) or "").upper()
        if shop in allowed:
            self.currency, self.presentment = shop, False
        elif presentment in allowed:
            self.currency, self.presentment = presentment, True
        else:
            raise unsupported_currency([shop, presentment], allowed)

    def amount(self, plain: Decimal | None, raw_set: MoneySetRaw, field: str) -> Decimal:
        """The amount of `field` in the chosen currency (0 when the shop left it out)."""
        if plain is not None and not self.presentment:
            if plain.is_finite() and -MAX_AMOUNT < plain < MAX_AMOUNT:  # inline fast path of amount()
                return plain
            return amount(plain, field)
        money_set = _money_set(raw_set, field)
        money = money_set.presentment_money if self.presentment else money_set.shop_money
        if money is None or money.amount is None:
            if self.presentment and plain is not None:
                raise TranslationError(Reason.MALFORMED_BODY, f"{field} has no presentment amount")
            return Decimal(0)
        return amount(money.amount, field)

    def price(self, plain: Decimal | None, raw_set: MoneySetRaw, field: str) -> Price:
        return Price(value=self.amount(plain, raw_set, field), currency=self.currency)


def _money_set(raw_set: MoneySetRaw, field: str) -> _MoneySet:
    try:
        return _MONEY_SET_DECODER.decode(raw_set) or _MoneySet()
    except DECODE_ERRORS as exc:
        raise TranslationError(Reason.MALFORMED_BODY, f"{field}_set: {exc}") from None


def _has(raw_set: MoneySetRaw) -> bool:
    return raw_set is not _NO_SET and bytes(raw_set).strip() != b"null"


def _presentment_code(raw_set: MoneySetRaw) -> str | None:
    money = _money_set(raw_set, "total_price").presentment_money
    return money.currency_code if money is not None else None


# ---------------------------------------------------------------- pieces of the order


def _shippable(order: _Order) -> list[tuple[_LineItem, int]]:
    """The lines to ship with their quantities (`current_quantity`, else `quantity`).

    `no_shippable_items` when no line requires shipping, or every such line is at 0.
    """
    shippable = [line for line in order.line_items if line.requires_shipping is not False]
    if not shippable:
        raise TranslationError(Reason.NO_SHIPPABLE_ITEMS, "no line item requires shipping")
    lines = [(line, line.quantity if line.current_quantity is None else line.current_quantity) for line in shippable]
    if order.cancelled_at is not None and all(quantity <= 0 for _, quantity in lines):
        # A cancellation with restock sets every current_quantity to 0; the cancel must
        # still reach Sendcloud, or the merchant ships a cancelled order.
        lines = [(line, line.quantity) for line in shippable]
    lines = [(line, quantity) for line, quantity in lines if quantity > 0]
    if not lines:
        raise TranslationError(Reason.NO_SHIPPABLE_ITEMS, "every line item that requires shipping has quantity 0")
    return lines


def _item(line: _LineItem, quantity: int, index: int, money: _MoneyPicker) -> OrderItem:
    unit = money.amount(line.price, line.price_set, "line_items.price")
    if line.discount_allocations:
        discount = ZERO
        for allocation in line.discount_allocations:
            discount += money.amount(allocation.amount, allocation.amount_set, "line_items.discount_allocations")
    else:
        discount = money.amount(line.total_discount, line.total_discount_set, "line_items.total_discount")
    kg = grams_to_kg(line.grams)
    currency = money.currency
    return OrderItem(
        name=unescaped(line.name) or unescaped(line.title) or f"Item {line.id or index + 1}",
        quantity=quantity,
        total_price=Price(value=max(unit * quantity - discount, ZERO), currency=currency),
        unit_price=Price(value=unit, currency=currency),
        item_id=None if line.id is None else str(line.id),
        product_id=None if line.product_id is None else str(line.product_id),
        variant_id=None if line.variant_id is None else str(line.variant_id),
        sku=text(line.sku),
        properties=_properties(line.properties) if line.properties else None,
        measurement=None if kg is None else Measurement(weight=Weight(value=kg, unit="kg")),
    )


def _properties(properties: list[_Property] | None) -> dict[str, Any] | None:
    """Line-item properties the buyer sees; Shopify hides names starting with `_`."""
    if not properties:
        return None
    visible = {
        name: prop.value
        for prop in properties
        if (name := text(prop.name)) and not name.startswith("_") and isinstance(prop.value, str | int | float | bool)
    }
    return visible or None


def _email(order: _Order) -> str | None:
    customer_email = order.customer.email if order.customer is not None else None
    return text(order.email) or text(order.contact_email) or text(customer_email)


def _address(address: _Address | None, email: str | None, phone: str | None) -> Address | None:
    if address is None:
        return None
    return build_address(
        name=full_name(address.first_name, address.last_name, address.name),
        company=address.company,
        street=address.address1,
        line2=address.address2,
        postal_code=address.zip,
        city=address.city,
        state=address.province_code,
        country_code=address.country_code,
        phone=text(address.phone) or phone,
        email=email,
    )


def _customer(order: _Order, email: str | None, phone: str | None) -> CustomerDetails | None:
    """The buyer: the customer record's name, else the billing, else the shipping name."""
    customer = order.customer
    name = full_name(customer.first_name, customer.last_name) if customer is not None else None
    for address in (order.billing_address, order.shipping_address):
        if name is None and address is not None:
            name = full_name(address.first_name, address.last_name, address.name)
    if name is None:
        return None
    return CustomerDetails(name=name, email=email, phone_number=phone)


def _is_pickup(lines: Sequence[_ShippingLine]) -> bool:
    for line in lines:
        for marker in (line.delivery_category, line.code):
            if marker is not None and marker.strip().lower() in _PICKUP_MARKERS:
                return True
    return False


def _order_status(order: _Order) -> str:
    if order.cancelled_at is not None:
        return "cancelled"
    return text(order.fulfillment_status) or "unfulfilled"


def _tags(tags: str | None) -> list[str] | None:
    if not tags:
        return None
    return [tag for part in tags.split(",") if (tag := part.strip())] or None


# ---------------------------------------------------------------- the adapter


class ShopifyOptions(PlatformOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[integrations.options]` of a Shopify integration (all optional; read by nothing yet)."""

    #: the shop's `*.myshopify.com` domain: where Admin API calls go once an issue needs them
    shop_domain: str = ""


class ShopifyAdapter:
    """Shopify webhooks: HMAC over the raw body, `X-Shopify-*` (or `shopify-*`) headers."""

    platform = "shopify"
    order_topics = frozenset(
        {
            "orders/create",
            "orders/updated",
            "orders/paid",
            "orders/cancelled",
            "orders/fulfilled",
            "orders/partially_fulfilled",
        }
    )
    headers = MappingProxyType(
        {
            "X-Shopify-Hmac-Sha256": "Shopify: base64(HMAC-SHA256(secret, raw body)). Missing or wrong: 401.",
            "Shopify-Hmac-Sha256": "Shopify, unprefixed spelling of `X-Shopify-Hmac-Sha256` (read when that is "
            "absent).",
            "X-Shopify-Topic": "Shopify: the topic, e.g. `orders/create`. Missing on a signed delivery: 400.",
            "Shopify-Topic": "Shopify, unprefixed spelling of `X-Shopify-Topic`.",
            "X-Shopify-Webhook-Id": "Shopify: the delivery id, the same on retries; a repeat is answered `duplicate`.",
            "Shopify-Webhook-Id": "Shopify, unprefixed spelling of `X-Shopify-Webhook-Id`.",
            "X-Shopify-Event-Id": "Shopify: the delivery id used when no webhook id header is sent.",
            "Shopify-Event-Id": "Shopify, unprefixed spelling of `X-Shopify-Event-Id`.",
        }
    )
    #: Shopify sends no ping: a subscription is tested with a real (signed) delivery.
    ping: str | None = None
    options_type = ShopifyOptions
    sample_secret = "sandbox-shopify-secret"

    def __init__(self, currencies: frozenset[str] = DEFAULT_CURRENCIES) -> None:
        self.currencies = frozenset(currencies)

    def is_ping(self, headers: Headers, body: bytes) -> bool:
        return False

    def verify(self, headers: Headers, body: bytes, secrets: Sequence[str]) -> bool:
        signature = header(headers, "x-shopify-hmac-sha256", "shopify-hmac-sha256")
        return hmac_sha256_base64_matches(body, signature, secrets)

    def delivery_id(self, headers: Headers) -> str | None:
        return header(headers, "x-shopify-webhook-id", "shopify-webhook-id", "x-shopify-event-id", "shopify-event-id")

    def topic(self, headers: Headers) -> str | None:
        return header(headers, "x-shopify-topic", "shopify-topic")

    def sign(
        self, body: bytes, secret: str, *, topic: str | None = None, delivery_id: str | None = None
    ) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic or "orders/create",
            "X-Shopify-Hmac-Sha256": hmac_sha256_base64(secret, body),
            "X-Shopify-Shop-Domain": "order-bridge-sample.myshopify.com",
            "X-Shopify-API-Version": "2025-01",
            "X-Shopify-Webhook-Id": delivery_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
        }

    def sample(self) -> bytes:
        return _SAMPLE.read_bytes()

    def translate(self, body: bytes, integration_id: int) -> Order:
        order = _decode(body)
        lines = _shippable(order)
        try:
            money = _MoneyPicker(order, self.currencies)
        except TranslationError as exc:
            raise exc.about(str(order.id), text(order.name) or str(order.order_number or order.id)) from None
        items = [_item(line, quantity, index, money) for index, (line, quantity) in enumerate(lines)]
        email = _email(order)
        billing_phone = order.billing_address.phone if order.billing_address is not None else None
        customer_phone = order.customer.phone if order.customer is not None else None
        phone = text(order.phone) or text(billing_phone) or text(customer_phone)
        shipping_lines = order.shipping_lines or []
        shipping_price = (
            money.price(None, order.total_shipping_price_set, "total_shipping_price_set")
            if _has(order.total_shipping_price_set)
            else Price(
                value=sum((money.amount(s.price, s.price_set, "shipping_lines.price") for s in shipping_lines), ZERO),
                currency=money.currency,
            )
        )
        discount = costs_value(money.amount(order.total_discounts, order.total_discounts_set, "total_discounts"))
        kg = grams_to_kg(order.total_weight)
        shipping = _address(order.shipping_address, email, phone)
        # Most orders bill and ship to the same place: build that address once.
        same = order.billing_address == order.shipping_address
        billing = shipping if same else _address(order.billing_address, email, phone)
        return Order(
            order_id=str(order.id),
            order_number=text(order.name) or str(order.order_number or order.id),
            order_details=OrderDetails(
                integration=Integration(id=integration_id),
                status=Status(code=_order_status(order)),
                order_created_at=order.created_at,
                order_updated_at=order.updated_at,
                order_items=items,
                notes=text(order.note),
                tags=_tags(order.tags),
            ),
            payment_details=PaymentDetails(
                total_price=money.price(order.total_price, order.total_price_set, "total_price"),
                subtotal_price=money.price(order.subtotal_price, order.subtotal_price_set, "subtotal_price"),
                estimated_shipping_price=shipping_price,
                estimated_tax_price=money.price(order.total_tax, order.total_tax_set, "total_tax"),
                status=Status(code=text(order.financial_status) or "unknown"),
                discount_granted=Costs(value=discount, currency=money.currency) if discount else None,
            ),
            customer_details=_customer(order, email, phone),
            billing_address=billing,
            shipping_address=shipping,
            shipping_details=ShippingDetails(
                is_local_pickup=_is_pickup(shipping_lines),
                delivery_indicator=text(shipping_lines[0].title) if shipping_lines else None,
                measurement=Measurement(weight=Weight(value=kg, unit="kg")) if kg is not None else None,
            ),
        )
