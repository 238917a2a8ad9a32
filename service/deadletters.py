"""Dead letters — orders that could not be sent — counted and logged as the store keeps them.

Two kinds arrive: orders that cannot become a valid Sendcloud order (the adapter's
`unsupported_currency`, from the webhook), and orders Sendcloud refused in a batch
(`sendcloud_rejected`, with the JSON:API pointer and detail, from the buffer's settlement). The
store keeps them (`service.store.Store.dead_letters`); nothing goes away silently: every dead
letter is logged (`order.dead_lettered`) and counted (`orders_dead_lettered_total{reason}`), and
a letter evicted from a full store is logged too (`deadletter.evicted`).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from adapters.sendcloud import scrub_quoted
from service.metrics import Metrics
from service.store import DeadLetter

__all__ = ["DeadLetter", "record_dead_letters"]

_log = structlog.get_logger("order_bridge.deadletters")

#: Quoted text in a Sendcloud error detail may echo a submitted value; it is kept in the letter
#: but not logged (`scrub_quoted`).
_MAX_LOGGED_DETAIL = 200


def _loggable(detail: str) -> str:
    return scrub_quoted(detail)[:_MAX_LOGGED_DETAIL]


def record_dead_letters(
    letters: Sequence[DeadLetter], evicted: Sequence[DeadLetter], metrics: Metrics, *, capacity: int
) -> None:
    """Count and log letters the store has just kept, and the ones it evicted for them."""
    for old in evicted:
        _log.warning(
            "deadletter.evicted",
            integration_id=old.integration_id,
            order_id=old.order_id,
            reason=old.reason,
            capacity=capacity,
        )
    for letter in letters:
        metrics.orders_dead_lettered.labels(reason=letter.reason).inc()
        _log.warning(
            "order.dead_lettered",
            dead_letter_id=letter.id or None,
            integration_id=letter.integration_id,
            platform=letter.platform,
            order_id=letter.order_id,
            delivery_id=letter.delivery_id,
            batch_id=letter.batch_id,
            reason=letter.reason,
            pointer=letter.pointer,
            detail=_loggable(letter.detail),
        )
