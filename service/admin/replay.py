"""Replaying and discarding dead letters: what a person does to an order that did not reach
Sendcloud once its cause is fixed.

A letter made when the adapter could not translate the webhook (an unsupported currency) keeps
the webhook body: a replay translates it again with *today's* config and adapter, so a currency
added to the config (SIGHUP) or a fixed adapter rescues the order. A letter Sendcloud refused
keeps the order as it was sent: a replay puts that order back in its lane (after the cause was
fixed on Sendcloud's side). Either way the order goes through `Buffer.add` like any webhook — a
newer version already sent makes it stale, a pending one is coalesced — and the letter leaves the
store in the same commit as the order's arrival (`Arrival.replay_of`): both happen or neither.
A replay that fails again keeps the letter, one attempt more. A letter being replayed or
discarded is not taken by a second request at the same time (`InProgress`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import msgspec
import structlog

from adapters import TranslationError
from adapters.sendcloud import Order
from service.admin.views import shown_detail
from service.app import AppState
from service.store import AddResult, DeadLetter, HistoryEvent

__all__ = ["InProgress", "NotReplayable", "ReplayResult", "discard", "replay"]

_log = structlog.get_logger("order_bridge.admin")
_ORDER = msgspec.json.Decoder(Order)


class NotReplayable(Exception):
    """The letter cannot be replayed as things are (answered 409 with `code` and `detail`)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ReplayResult(msgspec.Struct, frozen=True, omit_defaults=True):
    id: int
    #: buffered, coalesced or stale (the order is in its lane, or a newer version went already:
    #: the letter is gone either way); failed (still a dead letter, one attempt more)
    status: Literal["buffered", "coalesced", "stale", "failed"]
    order_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    attempts: int | None = None


class InProgress:
    """Dead letters being replayed or discarded right now: a second request for one of them is
    refused (409 `in_progress`) instead of racing the first."""

    def __init__(self) -> None:
        self._ids: set[int] = set()

    @contextlib.contextmanager
    def holding(self, letter_id: int) -> Iterator[None]:
        if letter_id in self._ids:
            raise NotReplayable("in_progress", "The letter is being replayed or discarded by another request.")
        self._ids.add(letter_id)
        try:
            yield
        finally:
            self._ids.discard(letter_id)


async def replay(state: AppState, letter_id: int, busy: InProgress) -> ReplayResult | None:
    """Replay one letter; None when there is no such letter (any more). Raises `NotReplayable`,
    or what `Buffer.add` raises (`BufferFull`, `BufferClosed`, `StoreUnavailable`: answered 503;
    the order and the letter are then as they were — the letter leaves in the order's commit)."""
    with busy.holding(letter_id):
        letter = await state.store.dead_letter(letter_id)
        if letter is None:
            return None
        integration = state.integrations.get(letter.integration_id)
        if integration is None or integration.config.platform != letter.platform:
            raise NotReplayable("unknown_integration", "The letter's integration is no longer configured.")
        at = state.buffer.clock.wall()
        if letter.order is not None:
            try:
                order = _ORDER.decode(letter.order.json)
            except msgspec.ValidationError as exc:
                return await _failed(state, letter, "invalid_order", shown_detail(str(exc)), at)
        else:
            body = await state.store.dead_letter_webhook(letter.id)
            if body is None:
                raise NotReplayable("nothing_to_replay", "The letter keeps neither an order nor its webhook body.")
            try:
                order = integration.adapter.translate(body, letter.integration_id)
            except TranslationError as exc:
                return await _failed(state, letter, str(exc.reason), exc.detail, at)
        added = await state.buffer.add(
            letter.integration_id, letter.platform, order, received_at=at, replay_of=letter.id
        )
    status: Literal["buffered", "coalesced", "stale"] = (
        "buffered" if added is AddResult.BUFFERED else "coalesced" if added is AddResult.COALESCED else "stale"
    )
    _log.info(
        "deadletter.replayed",
        dead_letter_id=letter.id,
        integration_id=letter.integration_id,
        order_id=order.order_id,
        outcome=status,
    )
    return ReplayResult(letter.id, status, order_id=order.order_id)


async def _failed(state: AppState, letter: DeadLetter, reason: str, detail: str, at: float) -> ReplayResult:
    again = await state.store.dead_letter_failed_again(letter.id, detail, at)
    attempts = again.attempts if again is not None else letter.attempts + 1
    _log.warning(
        "deadletter.replay_failed",
        dead_letter_id=letter.id,
        integration_id=letter.integration_id,
        order_id=letter.order_id,
        reason=reason,
        attempts=attempts,
    )
    if letter.order_id is not None:
        step = HistoryEvent(
            *(letter.integration_id, letter.order_id, at, "replay_failed"),
            reason=reason,
            detail=shown_detail(detail),
            dead_letter_id=letter.id,
        )
        state.store.record_history([step])
    return ReplayResult(letter.id, "failed", letter.order_id, reason, shown_detail(detail), attempts)


async def discard(state: AppState, letter_id: int, busy: InProgress) -> DeadLetter | None:
    """Delete a letter for good (its order and webhook body with it); None if there is none."""
    with busy.holding(letter_id):
        letter = await state.store.resolve_dead_letter(letter_id, "discarded")
    if letter is None:
        return None
    _log.warning(
        "deadletter.discarded",
        dead_letter_id=letter_id,
        integration_id=letter.integration_id,
        order_id=letter.order_id,
        reason=letter.reason,
    )
    if letter.order_id is not None:
        at = state.buffer.clock.wall()
        state.store.record_history(
            [HistoryEvent(letter.integration_id, letter.order_id, at, "discarded", dead_letter_id=letter_id)]
        )
    return letter
