"""WooCommerce: `order.*` webhooks (the WP REST API v3 order) → Sendcloud orders.

WooCommerce builds the body when the delivery runs, so every body is the order's latest
snapshot. Things it does not send, and what stands in for them:

- *Which items need shipping.* Line items carry no `virtual` flag. WooCommerce only asks for a
  shipping method and address when the cart needs shipping, so an order with no shipping
  line and an empty shipping address has nothing to ship (`no_shippable_items`).
- *Weights.* Line items carry none (they live on the product), so none are sent.
- *House numbers.* No core field; address plugins keep one in `meta_data`, which wins over
  splitting `address_1`.
- *Time zones.* `date_*_gmt` are UTC without an offset; the offset is added here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec

from adapters.address import build_address, house_number_from_meta
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
    Integration,
    Order,
    OrderDetails,
    OrderItem,
    PaymentDetails,
    Price,
    ShippingDetails,
    Status,
)
from adapters.units import PlatformId, Quantity, amount, costs_value, full_name, text, unescaped, utc

__all__ = ["WooCommerceAdapter", "WooCommerceOptions"]

_SAMPLE = Path(__file__).parent / "samples" / "woocommerce.json"
#: The ping WooCommerce sends when a webhook is created or activated: unsigned, form-encoded.
_PING = re.compile(rb"\s*webhook_id=\d+\s*")

#: `shipping_lines[].method_id` of local pickup: legacy `local_pickup` and Blocks' `pickup_location`
#: (older payloads add an instance, `local_pickup:3`).
_PICKUP_METHODS = frozenset({"local_pickup", "pickup_location"})


# ---------------------------------------------------------------- payload


class _Payload(msgspec.Struct, gc=False):
    """Base of the payload Structs: unknown fields are ignored."""


class _Meta(_Payload):
    key: str | None = None
    value: Any = None


class _Address(_Payload):
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    postcode: str | None = None
    country: str | None = None
    email: str | None = None
    phone: str | None = None


class _LineItem(_Payload):
    id: PlatformId | None = None
    name: str | None = None
    product_id: PlatformId | None = None
    variation_id: PlatformId | None = None
    quantity: Quantity = 0
    subtotal: Decimal | None = None
    total: Decimal | None = None
    price: Decimal | None = None
    sku: str | None = None


class _ShippingLine(_Payload):
    method_title: str | None = None
    method_id: str | None = None


class _Order(_Payload):
    id: PlatformId
    date_created_gmt: datetime
    line_items: list[_LineItem]
    number: str | None = None
    status: str | None = None
    currency: str | None = None
    date_modified_gmt: datetime | None = None
    date_paid_gmt: datetime | None = None
    total: Decimal | None = None
    shipping_total: Decimal | None = None
    total_tax: Decimal | None = None
    discount_total: Decimal | None = None
    customer_note: str | None = None
    billing: _Address | None = None
    shipping: _Address | None = None
    shipping_lines: list[_ShippingLine] | None = None
    meta_data: list[_Meta] | None = None


class _Legacy(_Payload):
    """The legacy v3 body, `{"order": {...}}`: recognised only to refuse it clearly."""

    order: dict[str, Any]


_ORDER_DECODER = msgspec.json.Decoder(_Order)
_LEGACY_DECODER = msgspec.json.Decoder(_Legacy)


def _decode(body: bytes) -> _Order:
    try:
        return _ORDER_DECODER.decode(body)
    except DECODE_ERRORS as exc:
        problem = str(exc)
    try:
        _LEGACY_DECODER.decode(body)
    except DECODE_ERRORS:
        raise TranslationError(Reason.MALFORMED_BODY, f"not a WooCommerce order: {problem}") from None
    raise TranslationError(
        Reason.MALFORMED_BODY,
        'legacy v3 webhook body ({"order": ...}); set the webhook\'s API version to WP REST API Integration v3',
    )


# ---------------------------------------------------------------- pieces of the order


def _has_address(address: _Address | None) -> bool:
    return address is not None and any(
        text(part) for part in (address.address_1, address.city, address.postcode, address.country)
    )


def _is_pickup(lines: Sequence[_ShippingLine]) -> bool:
    return any((line.method_id or "").partition(":")[0].strip() in _PICKUP_METHODS for line in lines)


def _item(line: _LineItem, index: int, currency: str) -> OrderItem:
    field = f"line_items[{index}]"
    quantity = line.quantity
    subtotal = amount(line.subtotal, f"{field}.subtotal")
    unit = amount(line.price, f"{field}.price") if line.price is not None else subtotal / quantity
    discount = max(
        subtotal - amount(line.total if line.total is not None else line.subtotal, f"{field}.total"), Decimal(0)
    )
    total = max(unit * quantity - discount, Decimal(0))
    return OrderItem(
        name=unescaped(line.name) or f"Item {line.id or index + 1}",
        quantity=quantity,
        total_price=Price(value=total, currency=currency),
        unit_price=Price(value=unit, currency=currency),
        item_id=str(line.id) if line.id is not None else None,
        product_id=str(line.product_id) if line.product_id else None,
        variant_id=str(line.variation_id) if line.variation_id else None,
        sku=text(line.sku),
    )


def _address(
    address: _Address | None, kind: str, meta: dict[str, object], email: str | None, phone: str | None
) -> Address | None:
    if address is None:
        return None
    return build_address(
        name=full_name(address.first_name, address.last_name),
        company=address.company,
        street=address.address_1,
        line2=address.address_2,
        postal_code=address.postcode,
        city=address.city,
        state=address.state,
        country_code=address.country,
        phone=text(address.phone) or phone,
        email=email,
        house_number=house_number_from_meta(meta, kind),
    )


# ---------------------------------------------------------------- the adapter


class WooCommerceOptions(PlatformOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[integrations.options]` of a WooCommerce integration (all optional; read by nothing yet)."""

    #: the shop's base URL (`https://shop.example/`): where REST API calls go once an issue needs them
    store_url: str = ""


class WooCommerceAdapter:
    """WooCommerce webhooks: HMAC over the raw body, `X-WC-Webhook-*` headers."""

    platform = "woocommerce"
    order_topics = frozenset({"order.created", "order.updated", "order.restored"})
    headers = MappingProxyType(
        {
            "X-WC-Webhook-Signature": "WooCommerce: base64(HMAC-SHA256(secret, raw body)). Missing or wrong: 401.",
            "X-WC-Webhook-Topic": "WooCommerce: the topic, e.g. `order.updated`. Missing on a signed delivery: 400.",
            "X-WC-Webhook-Delivery-ID": "WooCommerce: the delivery id; a repeat is answered `duplicate`.",
        }
    )
    ping = "WooCommerce: `webhook_id=N`, form-encoded and unsigned, when a webhook is created or activated."
    options_type = WooCommerceOptions
    sample_secret = "sandbox-woocommerce-secret"

    def __init__(self, currencies: frozenset[str] = DEFAULT_CURRENCIES) -> None:
        self.currencies = frozenset(currencies)

    def is_ping(self, headers: Headers, body: bytes) -> bool:
        return _PING.fullmatch(body) is not None

    def verify(self, headers: Headers, body: bytes, secrets: Sequence[str]) -> bool:
        return hmac_sha256_base64_matches(body, header(headers, "x-wc-webhook-signature"), secrets)

    def delivery_id(self, headers: Headers) -> str | None:
        return header(headers, "x-wc-webhook-delivery-id")

    def topic(self, headers: Headers) -> str | None:
        return header(headers, "x-wc-webhook-topic")

    def sign(
        self, body: bytes, secret: str, *, topic: str | None = None, delivery_id: str | None = None
    ) -> dict[str, str]:
        """`secret` as the merchant typed it: WordPress decodes HTML entities in the stored secret
        before keying the HMAC (`WC_Webhook::generate_signature`), so the bytes are the same."""
        topic = topic or "order.created"
        resource, _, event = topic.partition(".")
        return {
            "Content-Type": "application/json",
            "User-Agent": "WooCommerce/9.8.3 Hookshot (WordPress/6.8)",
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": hmac_sha256_base64(secret, body),
            "X-WC-Webhook-ID": "1",
            "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
        }

    def sample(self) -> bytes:
        return _SAMPLE.read_bytes()

    def translate(self, body: bytes, integration_id: int) -> Order:
        order = _decode(body)
        shipping_lines = order.shipping_lines or []
        pickup = _is_pickup(shipping_lines)
        if not shipping_lines and not _has_address(order.shipping):
            raise TranslationError(Reason.NO_SHIPPABLE_ITEMS, "no shipping line and no shipping address: nothing ships")
        lines = [line for line in order.line_items if line.quantity > 0]
        if not lines:
            raise TranslationError(Reason.NO_SHIPPABLE_ITEMS, "no line item with a quantity above 0")
        currency = (order.currency or "").strip().upper()
        if currency not in self.currencies:
            raise unsupported_currency([currency], self.currencies).about(
                str(order.id), text(order.number) or str(order.id)
            )
        items = [_item(line, index, currency) for index, line in enumerate(lines)]

        billing = order.billing
        email = text(billing.email) if billing is not None else None
        phone = (text(order.shipping.phone) if order.shipping is not None else None) or (
            text(billing.phone) if billing is not None else None
        )
        meta = {m.key: m.value for m in order.meta_data or [] if m.key}
        names = (full_name(a.first_name, a.last_name) for a in (billing, order.shipping) if a is not None)
        customer_name = next((name for name in names if name), None)
        subtotal = sum((amount(line.subtotal, "line_items.subtotal") for line in order.line_items), Decimal(0))
        discount = costs_value(amount(order.discount_total, "discount_total"))
        return Order(
            order_id=str(order.id),
            order_number=text(order.number) or str(order.id),
            order_details=OrderDetails(
                integration=Integration(id=integration_id),
                status=Status(code=text(order.status) or "unknown"),
                order_created_at=utc(order.date_created_gmt),
                order_updated_at=utc(order.date_modified_gmt) if order.date_modified_gmt is not None else None,
                order_items=items,
                notes=text(order.customer_note),
            ),
            payment_details=PaymentDetails(
                total_price=Price(value=amount(order.total, "total"), currency=currency),
                subtotal_price=Price(value=subtotal, currency=currency),
                estimated_shipping_price=Price(value=amount(order.shipping_total, "shipping_total"), currency=currency),
                estimated_tax_price=Price(value=amount(order.total_tax, "total_tax"), currency=currency),
                status=Status(code="paid" if order.date_paid_gmt is not None else "unpaid"),
                discount_granted=Costs(value=discount, currency=currency) if discount else None,
            ),
            customer_details=CustomerDetails(name=customer_name, email=email, phone_number=phone)
            if customer_name
            else None,
            billing_address=_address(billing, "billing", meta, email, phone),
            shipping_address=_address(order.shipping, "shipping", meta, email, phone),
            shipping_details=ShippingDetails(
                is_local_pickup=pickup,
                delivery_indicator=text(shipping_lines[0].method_title) if shipping_lines else None,
            ),
        )
