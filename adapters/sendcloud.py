"""One order of Sendcloud's `POST /api/v3/orders` request, as msgspec Structs.

The Structs mirror `components.schemas.order` of Sendcloud's published Orders OpenAPI document
(vendored in `tests/sendcloud/orders-openapi.yaml`), with its constraints written as
`msgspec.Meta`. msgspec checks constraints when it *decodes*, not when a Struct is built, so
`validate()` round-trips an order through the encoder and the typed decoder: an order that
would poison a whole batch at Sendcloud (all-or-nothing) fails there. The adapters build
orders valid by construction and do not pay for that round trip on the webhook path; the
tests call `validate()` on everything they produce.

Money comes in two shapes, exactly as the spec has it: `Price.value` is a JSON *number*
(a `Decimal` encoded as a number by `ENCODER`), `Costs.value` a *decimal string*.
Unset fields are omitted from the JSON (`omit_defaults`), and string fields the spec marks
`minLength: 1` cannot be empty.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

__all__ = [
    "DEFAULT_CURRENCIES",
    "ENCODER",
    "Address",
    "Costs",
    "CustomerDetails",
    "CustomsDetails",
    "DangerousGoods",
    "DeliveryDates",
    "Dimension",
    "EncodedOrder",
    "Integration",
    "InvalidOrder",
    "Measurement",
    "Order",
    "OrderDetails",
    "OrderItem",
    "PaymentDetails",
    "Price",
    "ServicePoint",
    "ShipWith",
    "ShippingDetails",
    "ShippingOptionProperties",
    "Status",
    "TaxNumber",
    "TaxNumbers",
    "Volume",
    "Weight",
    "encode_order",
    "encode_orders",
    "scrub_quoted",
    "validate",
]

#: The currencies the published spec allows in a Price. Sendcloud may widen the set; the
#: service passes its configured set to `validate()` and to the adapters.
DEFAULT_CURRENCIES: frozenset[str] = frozenset({"EUR", "GBP", "USD"})

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
# Patterns use `\Z` and `[0-9]`: msgspec matches with `re.search`, where `$` also matches before
# a final newline and `\d` matches any script's digits.
CountryCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}\Z", description="ISO 3166-1 alpha-2")]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z", description="ISO 4217")]
DecimalString = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]+)?\Z")]
DateTimeTz = Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601 with an offset")]
Quantity = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
ManufacturerId = Annotated[str, msgspec.Meta(max_length=70)]

WeightUnit = Literal["kg", "g", "lbs", "oz"]
DimensionUnit = Literal["cm", "mm", "m", "yd", "ft", "in"]
VolumeUnit = Literal["m3", "cm3", "l", "ml", "gal"]


class _Node(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Base of every request node: keyword-only, unset fields left out of the JSON."""


# ---------------------------------------------------------------- money


class Price(_Node):
    """`price`: a JSON number and a currency from the allowed set.

    The currency has no pattern here: `validate()` checks it against the allowed set, which
    is stricter, and a regex per price would double the cost of validation.
    """

    value: Decimal
    currency: str


class Costs(_Node):
    """`costs-object`: a decimal *string* (`"3.99"`) and a free currency string."""

    value: DecimalString | None = None
    currency: CurrencyCode | None = None


# ---------------------------------------------------------------- measurement


class Weight(_Node):
    value: PositiveFloat
    unit: WeightUnit


class Dimension(_Node):
    length: NonNegativeFloat
    width: NonNegativeFloat
    height: NonNegativeFloat
    unit: DimensionUnit


class Volume(_Node):
    value: Annotated[int, msgspec.Meta(ge=0)]
    unit: VolumeUnit


class Measurement(_Node):
    dimension: Dimension | None = None
    weight: Weight | None = None
    volume: Volume | None = None


# ---------------------------------------------------------------- order details


class Integration(_Node):
    id: Annotated[int, msgspec.Meta(ge=1)]


class Status(_Node):
    """Order or payment status: a free shop code (not an enum) and an optional message."""

    code: NonEmptyStr
    message: str | None = None


class DeliveryDates(_Node):
    handover_at: DateTimeTz | None = None
    deliver_at: DateTimeTz | None = None


class DangerousGoods(_Node):
    chemical_record_identifier: str | None = None
    regulation_set: Literal["IATA", "ADR"] | None = None
    packaging_type_quantity: str | None = None
    packaging_type: str | None = None
    packaging_instruction_code: str | None = None
    id_number: str | None = None
    class_division_number: str | None = None
    quantity: str | None = None
    unit_of_measurement: Literal["KG", "G", "L", "ML"] | None = None
    proper_shipping_name: str | None = None
    commodity_regulated_level_code: Literal["LQ", "EQ"] | None = None
    transportation_mode: Literal["Highway", "Ground", "PAX", "CAO"] | None = None
    emergency_contact_name: str | None = None
    emergency_contact_phone: str | None = None
    adr_packing_group_letter: Literal["I", "II", "III"] | None = None
    local_proper_shipping_name: str | None = None
    transport_category: str | None = None
    tunnel_restriction_code: str | None = None
    weight_type: Literal["Net", "Gross"] | None = None


class OrderItem(_Node):
    name: str
    quantity: Quantity
    total_price: Price
    item_id: NonEmptyStr | None = None
    product_id: str | None = None
    variant_id: str | None = None
    image_url: str | None = None
    description: str | None = None
    sku: str | None = None
    hs_code: str | None = None
    country_of_origin: CountryCode | None = None
    properties: dict[str, Any] | None = None
    unit_price: Price | None = None
    measurement: Measurement | None = None
    ean: str | None = None
    delivery_dates: DeliveryDates | None = None
    mid_code: str | None = None
    material_content: str | None = None
    intended_use: str | None = None
    manufacturer_product_id: ManufacturerId | None = None
    manufacturer_product_id_std: ManufacturerId | None = None
    dangerous_goods: DangerousGoods | None = None


class OrderDetails(_Node):
    integration: Integration
    status: Status
    order_created_at: DateTimeTz
    order_items: list[OrderItem]
    order_updated_at: DateTimeTz | None = None
    notes: str | None = None
    tags: list[str] | None = None


# ---------------------------------------------------------------- payment, customs, customer


class PaymentDetails(_Node):
    total_price: Price
    status: Status
    is_cash_on_delivery: bool | None = None
    subtotal_price: Price | None = None
    estimated_shipping_price: Price | None = None
    estimated_tax_price: Price | None = None
    invoice_date: str | None = None
    discount_granted: Costs | None = None
    insurance_costs: Costs | None = None
    freight_costs: Costs | None = None
    other_costs: Costs | None = None


class TaxNumber(_Node):
    name: str | None = None
    country_code: str | None = None
    value: str | None = None


class TaxNumbers(_Node):
    sender: list[TaxNumber] | None = None
    receiver: list[TaxNumber] | None = None
    importer_of_record: list[TaxNumber] | None = None


class CustomsDetails(_Node):
    commercial_invoice_number: str | None = None
    shipment_type: Literal["gift", "commercial_goods", "commercial_sample", "returned_goods"] | None = None
    export_type: Literal["private", "commercial_b2c", "commercial_b2b"] | None = None
    tax_numbers: TaxNumbers | None = None


class CustomerDetails(_Node):
    name: NonEmptyStr
    phone_number: str | None = None
    email: str | None = None


class Address(_Node):
    """Billing or shipping address; the five fields without defaults are required by the spec."""

    name: NonEmptyStr
    address_line_1: NonEmptyStr
    postal_code: NonEmptyStr
    city: NonEmptyStr
    country_code: CountryCode
    company_name: str | None = None
    house_number: str | None = None
    address_line_2: str | None = None
    po_box: str | None = None
    state_province_code: str | None = None
    email: str | None = None
    phone_number: str | None = None


# ---------------------------------------------------------------- shipping


class ShippingOptionProperties(_Node):
    shipping_option_code: str | None
    contract_id: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ShipWith(_Node):
    type: Literal["shipping_option_code"]
    properties: ShippingOptionProperties


class ShippingDetails(_Node):
    is_local_pickup: bool | None = None
    delivery_indicator: str | None = None
    measurement: Measurement | None = None
    ship_with: ShipWith | None = None


class ServicePoint(_Node):
    """`service-point`: exactly one of Sendcloud's `id` or the carrier's own id."""

    id: str | None = None
    carrier_service_point_id: str | None = None
    post_number: str | None = None
    latitude: str | None = None
    longitude: str | None = None
    type: str | None = None
    extra_data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.id is None) == (self.carrier_service_point_id is None):
            raise ValueError("service point needs exactly one of `id` or `carrier_service_point_id`")


# ---------------------------------------------------------------- the order


class Order(_Node):
    """One element of the request array of `POST /api/v3/orders`.

    `id` is Sendcloud's own id, a *string* in requests (an integer in responses), used only
    to name an existing order; upserts normally match on `order_id` + integration.
    """

    order_id: NonEmptyStr
    order_number: NonEmptyStr
    order_details: OrderDetails
    payment_details: PaymentDetails
    id: NonEmptyStr | None = None
    customs_details: CustomsDetails | None = None
    customer_details: CustomerDetails | None = None
    billing_address: Address | None = None
    shipping_address: Address | None = None
    shipping_details: ShippingDetails | None = None
    service_point_details: ServicePoint | None = None


#: Encodes Orders as Sendcloud wants them: Decimal prices as JSON numbers.
ENCODER = msgspec.json.Encoder(decimal_format="number")
_DECODER = msgspec.json.Decoder(Order)


class EncodedOrder(NamedTuple):
    """An order as it goes into a batch: its `order_id` and its JSON, possibly zlib-compressed.

    The buffer keeps orders in this form: the JSON takes about half the memory of the Structs
    (whose strings keep the payload they came from alive), compressed about a sixth; a batch is a
    join of the JSON.
    """

    order_id: str
    data: bytes
    compressed: bool = False

    @property
    def json(self) -> bytes:
        return zlib.decompress(self.data) if self.compressed else self.data

    def compress(self) -> EncodedOrder:
        """The same order, compressed (level 1: ~20 µs for a 2.4 kB order, ~60 % smaller)."""
        return self if self.compressed else EncodedOrder(self.order_id, zlib.compress(self.data, 1), True)


def encode_order(order: Order) -> EncodedOrder:
    return EncodedOrder(order.order_id, ENCODER.encode(order))


def encode_orders(orders: Iterable[Order | EncodedOrder]) -> bytes:
    """The request body of one batch: a JSON array of orders."""
    return b"[" + b",".join(o.json if isinstance(o, EncodedOrder) else ENCODER.encode(o) for o in orders) + b"]"


def _prices(order: Order) -> Iterator[tuple[str, Price]]:
    """Every Price of the order with its JSON path."""
    payment = order.payment_details
    for name in ("total_price", "subtotal_price", "estimated_shipping_price", "estimated_tax_price"):
        price = getattr(payment, name)
        if price is not None:
            yield f"$.payment_details.{name}", price
    for index, item in enumerate(order.order_details.order_items):
        yield f"$.order_details.order_items[{index}].total_price", item.total_price
        if item.unit_price is not None:
            yield f"$.order_details.order_items[{index}].unit_price", item.unit_price


#: Quoted text in an error message may echo a submitted value: msgspec quotes the offending value
#: in some messages (`Invalid enum value 'x'`), Sendcloud's error details sometimes do too. A
#: single-quoted value may hold an apostrophe (`'Shaquille O'Neal'`): the quote goes on while
#: the text after a closing quote runs on without a space to another quote.
_QUOTED = re.compile(r"'[^']*'(?:[^'\s]*')*|\"[^\"]*\"")
#: what may be a value even unquoted: an e-mail address, a phone-like run of 7+ digits
_UNQUOTED = re.compile(r"[^\s@'\"]+@[^\s@'\"]+|\+?\d(?:[\d\s\-().]*\d){6,}")


def scrub_quoted(text: str) -> str:
    """`text` with every single- or double-quoted part replaced by `'…'`, and e-mail addresses and
    phone-like digit runs by `…`: the one scrubber for error messages that may echo a value
    (orders carry personal data), used by `validate()`, the dead-letter log and the admin API."""
    return _UNQUOTED.sub("…", _QUOTED.sub("'…'", text))


class InvalidOrder(ValueError):
    """An order that breaks the spec's constraints; the message names the path and the rule."""


def validate(order: Order, currencies: frozenset[str] = DEFAULT_CURRENCIES) -> Order:
    """Check every constraint of the spec on `order`; return it unchanged or raise `InvalidOrder`.

    The message names the field and the rule, never the value (orders carry personal data).
    """
    for path, price in _prices(order):
        if not isinstance(price.value, Decimal) or not price.value.is_finite():
            raise InvalidOrder(f"Expected a finite number - at `{path}.value`")
        if price.currency not in currencies:
            raise InvalidOrder(f"Expected one of {', '.join(sorted(currencies))} - at `{path}.currency`")
    try:
        _DECODER.decode(ENCODER.encode(order))
    except (msgspec.ValidationError, msgspec.EncodeError, ValueError) as exc:
        raise InvalidOrder(scrub_quoted(str(exc))) from None
    return order
