"""Order versions for buffer and store tests: one real Shopify order, copied with other ids,
update times and numbers, as the webhook would hand them over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from adapters import get_adapter
from adapters.sendcloud import Order, encode_order
from service.store import Arrival

__all__ = ["BASE", "T0", "arrival", "order"]

FIXTURE = (
    Path(__file__).parent
    / "fixtures"
    / "shopify"
    / "shopify_python_api__order_1001_us_authorized_3items__rest_envelope.json"
)
BASE = get_adapter("shopify").translate(FIXTURE.read_bytes(), 7)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def order(order_id: str, minute: int = 0) -> Order:
    """A copy of the base order with another id and update time (`minute` after T0)."""
    details = msgspec.structs.replace(BASE.order_details, order_updated_at=T0 + timedelta(minutes=minute))
    return msgspec.structs.replace(BASE, order_id=order_id, order_details=details)


def arrival(order_id: str, minute: int = 0, *, received: float = 0.0, number: str | None = None) -> Arrival:
    """That order as it arrives at the store for integration 7 (another `number`: other content)."""
    placed = order(order_id, minute)
    if number is not None:
        placed = msgspec.structs.replace(placed, order_number=number)
    return Arrival(7, "shopify", encode_order(placed), (T0 + timedelta(minutes=minute)).timestamp(), received)
