"""What the admin API and the console show: lanes, dead letters and order histories as plain
Structs, the one place that decides which fields leave the process.

Nothing personal is in them: ids, counts, times, reasons, Sendcloud's pointer, and Sendcloud's
detail with quoted parts scrubbed (a detail may echo a submitted value). A dead letter's order
and webhook body never leave the store except through replay.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.sendcloud import scrub_quoted
from service.buffer import Buffer
from service.store import DeadLetter, HistoryEvent

__all__ = ["LaneView", "LetterView", "StepView", "iso", "lane_view", "letter_view", "step_view"]

#: Sendcloud's detail as shown (it is kept whole in the store)
_MAX_DETAIL = 300


def iso(at: float) -> str:
    """A POSIX time as ISO 8601 UTC, to the millisecond."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LaneView(msgspec.Struct, frozen=True):
    integration_id: int
    #: the configured platform; None for a lane whose integration left the config
    platform: str | None
    pending: int
    in_flight: int
    #: seconds the oldest unsettled order has waited
    oldest_age_seconds: float | None
    #: debounce, max_wait, size, demand, backoff, paused — or None with nothing pending
    next_flush: str | None
    next_flush_in_seconds: float | None
    #: failed attempts in a row (Sendcloud errors); the backoff left before the next one
    attempts: int
    backoff_seconds: float
    paused: bool


class LetterView(msgspec.Struct, frozen=True):
    id: int
    integration_id: int
    platform: str
    order_id: str | None
    order_number: str | None
    reason: str
    pointer: str | None
    detail: str
    at: str
    #: replays that failed again
    attempts: int
    batch_id: str | None
    delivery_id: str | None
    #: what a replay uses: "order" (the order as sent: Sendcloud refused it), or "webhook" (the
    #: body the adapter could not translate: translated again with today's config)
    replays: str


class StepView(msgspec.Struct, frozen=True, omit_defaults=True):
    at: str
    event: str
    order_number: str | None = None
    outcome: str | None = None
    delivery_id: str | None = None
    topic: str | None = None
    batch_id: str | None = None
    attempt: int | None = None
    sendcloud_id: str | None = None
    reason: str | None = None
    pointer: str | None = None
    detail: str | None = None
    dead_letter_id: int | None = None


def lane_view(buffer: Buffer, integration_id: int, platform: str | None) -> LaneView:
    store, clock = buffer.store, buffer.clock
    now, wall = clock.monotonic(), clock.wall()
    oldest = store.oldest_received(integration_id)
    lane = buffer.lane(integration_id)
    why, when = lane.next_flush(now, wall, False) if lane is not None else (None, None)
    return LaneView(
        integration_id=integration_id,
        platform=platform,
        pending=store.pending(integration_id),
        in_flight=store.in_flight(integration_id),
        oldest_age_seconds=round(max(0.0, wall - oldest), 3) if oldest is not None else None,
        next_flush=why,
        next_flush_in_seconds=round(when, 3) if when is not None else None,
        attempts=lane.attempts if lane is not None else 0,
        backoff_seconds=round(max(0.0, lane.not_before - now), 3) if lane is not None else 0.0,
        paused=lane.paused if lane is not None else integration_id in store.paused(),
    )


def shown_detail(detail: str) -> str:
    return scrub_quoted(detail)[:_MAX_DETAIL]


def letter_view(letter: DeadLetter) -> LetterView:
    return LetterView(
        id=letter.id,
        integration_id=letter.integration_id,
        platform=letter.platform,
        order_id=letter.order_id,
        order_number=letter.order_number,
        reason=letter.reason,
        pointer=letter.pointer,
        detail=shown_detail(letter.detail),
        at=iso(letter.at),
        attempts=letter.attempts,
        batch_id=letter.batch_id,
        delivery_id=letter.delivery_id,
        replays="order" if letter.order is not None else "webhook",
    )


def step_view(step: HistoryEvent) -> StepView:
    return StepView(
        at=iso(step.at),
        event=step.event,
        order_number=step.order_number,
        outcome=step.outcome,
        delivery_id=step.delivery_id,
        topic=step.topic,
        batch_id=step.batch_id,
        attempt=step.attempt,
        sendcloud_id=step.sendcloud_id,
        reason=step.reason,
        pointer=step.pointer,
        detail=step.detail,
        dead_letter_id=step.dead_letter_id,
    )
