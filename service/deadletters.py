"""Orders that could not be sent, kept in memory with why, and counted and logged.

Two kinds arrive here: orders that cannot become a valid Sendcloud order (the adapter's
`unsupported_currency`), and orders Sendcloud refused in a batch (`sendcloud_rejected`, with the
JSON:API pointer and detail). Nothing goes away silently: every dead letter is logged
(`order.dead_lettered`) and counted (`orders_dead_lettered_total{reason}`); when the store is full
the oldest letter is evicted, and that is logged too.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace

import structlog

from adapters.sendcloud import EncodedOrder, scrub_quoted
from service.metrics import Metrics

__all__ = ["DeadLetter", "DeadLetters"]

_log = structlog.get_logger("order_bridge.deadletters")

#: Quoted text in a Sendcloud error detail may echo a submitted value; it is kept in the letter
#: but not logged (`scrub_quoted`).
_MAX_LOGGED_DETAIL = 200


@dataclass(frozen=True, slots=True)
class DeadLetter:
    integration_id: int
    platform: str
    order_id: str | None
    reason: str
    detail: str
    pointer: str | None = None
    delivery_id: str | None = None
    #: the order's JSON as it was sent, when there was one (personal data: memory only, never logged)
    order: EncodedOrder | None = None
    at: float = 0.0


def _loggable(detail: str) -> str:
    return scrub_quoted(detail)[:_MAX_LOGGED_DETAIL]


class DeadLetters:
    """A bounded, in-memory list of dead letters, oldest evicted first."""

    def __init__(self, capacity: int, metrics: Metrics) -> None:
        self._letters: deque[DeadLetter] = deque()
        self._capacity = capacity
        self._metrics = metrics

    def add(self, letter: DeadLetter, *, batch_id: str | None = None) -> None:
        if not letter.at:
            letter = replace(letter, at=time.time())
        if len(self._letters) >= self._capacity:
            evicted = self._letters.popleft()
            _log.warning(
                "deadletter.evicted",
                integration_id=evicted.integration_id,
                order_id=evicted.order_id,
                reason=evicted.reason,
                capacity=self._capacity,
            )
        self._letters.append(letter)
        self._metrics.orders_dead_lettered.labels(reason=letter.reason).inc()
        self._metrics.dead_letters_stored.set(len(self._letters))
        _log.warning(
            "order.dead_lettered",
            integration_id=letter.integration_id,
            platform=letter.platform,
            order_id=letter.order_id,
            delivery_id=letter.delivery_id,
            batch_id=batch_id,
            reason=letter.reason,
            pointer=letter.pointer,
            detail=_loggable(letter.detail),
        )

    def __len__(self) -> int:
        return len(self._letters)

    def items(self) -> list[DeadLetter]:
        return list(self._letters)
