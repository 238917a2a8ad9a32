"""`Recent`: a bounded map of the most recent keys, cheap for the garbage collector.

Used for what the service remembers in bulk: delivery ids (`service.dedupe`) and sent order
versions (`service.lanes`). Two plain dicts take turns: new keys go into `_new`; when it is full
(half the capacity) it becomes `_old` and the previous `_old` is dropped whole. So the map holds
at most `capacity` keys and always at least the newest `capacity / 2`, with O(1) work per key.

Why not an `OrderedDict` with `popitem(last=False)`: CPython's garbage collector never stops
tracking an `OrderedDict`, and a full collection walks every entry — about 50 ms for a million
entries, an event-loop stall each time (docs/benchmarks.md). A plain dict whose keys are `str`
and whose values are numbers, or flat tuples of numbers, is untracked and costs a full
collection nothing. (A plain dict cannot pop its oldest key cheaply either: iteration scans the
holes deletions leave at the front.) Keep values atomic for that reason.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Recent"]

V = TypeVar("V")


class Recent(Generic[V]):
    __slots__ = ("_half", "_new", "_old")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._half = max(1, capacity // 2)
        self._new: dict[str, V] = {}
        self._old: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        value = self._new.get(key)
        return self._old.get(key) if value is None else value

    def put(self, key: str, value: V) -> None:
        self._old.pop(key, None)  # one copy only, so `len` is exact
        self._new[key] = value
        if len(self._new) >= self._half:
            self._old, self._new = self._new, {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)
