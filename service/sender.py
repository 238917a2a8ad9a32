"""What the buffer needs from Sendcloud, and what a send answers (DESIGN §6).

`Sender` is the Sendcloud side of a flush; `service.sendcloud.SendcloudClient` implements it over
HTTP, the tests with scripted answers. The buffer and the settlement of an answer
(`service.settlement`) depend only on this module, never on the HTTP client.

What the buffer does with each outcome:

- `accepted`        2xx: Sendcloud ids by `order_id`.
- `rejected`        400 whose pointers name orders (`/data/attributes/[N]/…`): exactly those
                    orders, with pointer and detail, go to the dead letters; the rest are resent
                    at once.
- `retry`           "still processing" 400, 409, 429, 5xx, timeouts, connection errors: the whole
                    batch is kept and resent after `retry_after` (Sendcloud's `Retry-After` when
                    it sent one, else the buffer's backoff).
- `misconfigured`   401, 403, a batch-level 400 (bad partner id, too many orders): nothing is
                    dropped; the orders are kept, an alert is logged and counted, and the batch
                    is retried after a backoff, until the operator fixes the configuration.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from adapters.sendcloud import EncodedOrder

__all__ = ["Rejection", "SendOutcome", "SendResult", "Sender", "backoff_delay"]


class Sender(Protocol):
    """The Sendcloud side of a flush."""

    async def reserve(self) -> None:
        """Wait for a token of the account's rate limit, for the next `send(..., reserved=True)`."""
        ...

    async def send(
        self, orders: Sequence[EncodedOrder], *, reserved: bool = False, still_mine: Callable[[], bool] | None = None
    ) -> SendResult:
        """One batch to Sendcloud; never raises for anything Sendcloud or the network does.
        `still_mine` is asked at the last moment before the request goes out: False (this
        process lost the flusher lease meanwhile) and no request is made (`not_flusher`)."""
        ...


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRY = "retry"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why Sendcloud refused one order of a batch: its JSON:API error, pointer as sent."""

    pointer: str
    code: str
    detail: str


@dataclass(slots=True)
class SendResult:
    outcome: SendOutcome
    #: HTTP status, or None when no answer came (timeout, connection error)
    status: int | None
    #: short machine cause: "201", "429", "still_processing", "timeout", "connection_error", …
    cause: str
    #: `order_id` → Sendcloud's id (int, or str if Sendcloud sends a string), for ACCEPTED
    accepted: dict[str, int | str] = field(default_factory=dict)
    #: index in the batch → its errors, for REJECTED
    rejected: dict[int, list[Rejection]] = field(default_factory=dict)
    #: seconds Sendcloud asked us to wait (`Retry-After`), when it said
    retry_after: float | None = None
    #: a human sentence for logs; never order data
    detail: str = ""


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base: float = 0.5,
    cap: float = 60.0,
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds to wait before attempt `attempt + 1` of a batch, after `attempt` failed ones.

    "Full jitter" exponential backoff: a uniform draw from `[0, min(cap, base · 2^(attempt-1)))`,
    so attempt 1 waits up to `base`, attempt 2 up to `2·base`, … never more than `cap`; the
    jitter spreads lanes that failed together. When Sendcloud sent `Retry-After`, the delay is
    never shorter than it: at least `retry_after` plus up to `base` of jitter (the server's
    wish is honoured even above `cap`). `random` returns a float in [0, 1) and is injectable
    for tests.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = random() * ceiling
    if retry_after is not None:
        delay = max(delay, max(0.0, retry_after) + random() * base)
    return delay
