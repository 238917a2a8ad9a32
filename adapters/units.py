"""Small conversions every adapter needs: text, money, weight and time.

Money is `Decimal` from end to end (shops send it as strings, sometimes as numbers; msgspec
decodes both exactly); it only becomes a JSON number or string in `adapters.sendcloud`.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from adapters.base import Reason, TranslationError

__all__ = [
    "MAX_AMOUNT",
    "ZERO",
    "PlatformId",
    "Quantity",
    "amount",
    "costs_value",
    "full_name",
    "grams_to_kg",
    "text",
    "unescaped",
    "utc",
]

ZERO = Decimal(0)

#: Larger amounts are not money a shop sends; they would only fail later, at Sendcloud.
MAX_AMOUNT = Decimal("1e12")

#: A platform's numeric id: exact (Python int, not float), bounded so it always prints.
PlatformId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

#: A line quantity as shops send it; 0 and negatives are possible and mean "nothing to ship".
Quantity = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31)]


def text(value: str | None) -> str | None:
    """The value stripped, or None when it is missing or blank (the spec forbids `""`)."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def unescaped(value: str | None) -> str | None:
    """`text()` after decoding HTML entities (`&ndash;`, `&amp;`), as shops send names."""
    return text(html.unescape(value)) if value is not None else None


def full_name(first: str | None, last: str | None, name: str | None = None) -> str | None:
    """First and last name joined, else `name`; None when all are blank."""
    joined = " ".join(part for part in (text(first), text(last)) if part)
    return joined or text(name)


def amount(value: Decimal | None, field: str) -> Decimal:
    """A money amount from the payload: missing is zero; NaN, infinite or absurd is malformed."""
    if value is None:
        return ZERO
    if not value.is_finite() or abs(value) >= MAX_AMOUNT:
        raise TranslationError(Reason.MALFORMED_BODY, f"{field} is not a usable amount")
    return value


def costs_value(value: Decimal) -> str | None:
    """A Costs `value`: a plain decimal string (`"3.99"`), None when not positive."""
    if value <= 0:
        return None
    return format(value, "f")


def grams_to_kg(grams: float | int | None) -> float | None:
    """Weight in kg, or None when the shop gives none (0 means "not set" on Shopify)."""
    if grams is None or not math.isfinite(grams) or grams <= 0:
        return None
    return grams / 1000


def utc(value: datetime) -> datetime:
    """`value` with an offset: WooCommerce's `*_gmt` times come without one and are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
