"""What a Sendcloud answer means for the batch it answers (DESIGN §6), as a pure function.

`settle(batch, result, at=…)` sorts every entry of the batch into sent, dead-lettered or retried
and says how the lane goes on; it reads no clock, store or network, so every rule is testable on
its own. The buffer applies the answer to the store (`Store.settle`), then logs and counts.

Nothing is ever dropped on a transient or configuration error: the whole batch is retried
(after a backoff). Orders Sendcloud refuses by pointer are dead letters; the rest of their
batch goes again at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from adapters.sendcloud import EncodedOrder
from service.sender import SendOutcome, SendResult
from service.store import Batch, DeadLetter, Settlement

__all__ = ["Verdict", "settle"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A settlement and how the lane goes on after it."""

    settlement: Settlement
    #: the `batches_total{outcome}` label: accepted, rejected, retried or misconfigured
    outcome: str
    #: the lane waits (backoff, at least `result.retry_after`) before its next attempt
    back_off: bool
    #: the lane flushes again at once (the rest of a batch Sendcloud refused in part)
    flush_again: bool


def settle(batch: Batch, result: SendResult, *, at: float) -> Verdict:
    """The verdict on `batch` after `result`; `at` (wall-clock seconds) dates its dead letters."""
    entries = batch.entries
    if result.outcome is SendOutcome.ACCEPTED:
        return Verdict(Settlement(entries, (), (), ()), "accepted", back_off=False, flush_again=False)
    if result.outcome is SendOutcome.REJECTED:
        refused = {index: errors for index, errors in result.rejected.items() if 0 <= index < len(entries)}
        letters = tuple(
            DeadLetter(
                integration_id=entries[index].integration_id,
                platform=entries[index].platform,
                order_id=entries[index].order_id,
                reason="sendcloud_rejected",
                detail="; ".join(error.detail for error in errors),
                pointer=errors[0].pointer if errors else None,
                delivery_id=entries[index].delivery_id,
                order=entries[index].order,
                at=at,
                batch_id=batch.id,
                order_number=_order_number(entries[index].order),
            )
            for index, errors in sorted(refused.items())
        )
        dead_entries = tuple(entries[index] for index in sorted(refused))
        rest = tuple(entry for index, entry in enumerate(entries) if index not in refused)
        return Verdict(Settlement((), letters, dead_entries, rest), "rejected", back_off=False, flush_again=True)
    outcome = "misconfigured" if result.outcome is SendOutcome.MISCONFIGURED else "retried"
    return Verdict(Settlement((), (), (), entries), outcome, back_off=True, flush_again=False)


class _Numbered(msgspec.Struct):
    order_number: str


_NUMBER = msgspec.json.Decoder(_Numbered)


def _order_number(order: EncodedOrder) -> str | None:
    """The order's number, read back from its JSON (only a refused order pays for it)."""
    try:
        return _NUMBER.decode(order.json).order_number
    except msgspec.DecodeError:
        return None
