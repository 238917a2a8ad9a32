"""Shared by the property tests: change one node deep inside a JSON document."""

from __future__ import annotations

from typing import Any


def mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node reached by following `path` (indexes into keys or items) with `replacement`."""
    if not path or not isinstance(value, dict | list) or not value:
        return replacement
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = mutate(value[key], path[1:], replacement)
    return copy
