"""Any input bytes give a valid Sendcloud order or a `TranslationError`, never another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import ADAPTERS, DEFAULT_CURRENCIES, Order, TranslationError, get_adapter
from adapters.sendcloud import ENCODER, validate
from tests.mutation import mutate
from tests.sendcloud_schema import order_validator

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = {
    platform: [json.loads(path.read_bytes()) for path in sorted((FIXTURES / platform).glob("*.json"))]
    for platform in ADAPTERS
}
VALIDATOR = order_validator(DEFAULT_CURRENCIES)
#: The fixed wording of decode errors (msgspec's and the adapters'): a planted value that is part
#: of it ("null", "inva" of "invalid character") is no echo of the payload.
FIXED_WORDING = " ".join(
    [
        "null true false object array string number bool float decimal int str",
        "JSON is malformed: invalid character (byte), trailing characters, input data was truncated",
        "Expected `…`, got `…` - at `$` Object missing required field Object contains unknown field Invalid value",
        "not a Shopify order: not a WooCommerce order:",
        'legacy v3 webhook body ({"order": ...}); set the webhook\'s API version to WP REST API Integration v3',
    ]
).lower()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "0", "-1", "NaN", "1e999", "12.50", "2024-01-01T00:00:00", "2024-01-01T00:00:00+02:00"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*_strings(key), *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _check(platform: str, body: bytes, planted: list[str] | None = None) -> None:
    """Translate; on error the detail must not repeat any planted value (they stand in for personal data)."""
    try:
        order = get_adapter(platform).translate(body, 7)
    except TranslationError as exc:
        assert exc.reason and exc.detail
        for value in planted or []:
            if len(value.strip()) >= 4 and value.strip().lower() not in FIXED_WORDING:
                assert value not in exc.detail, f"error detail repeats a payload value: {exc.detail}"
        return
    assert isinstance(order, Order)
    validate(order)
    errors = list(VALIDATOR.iter_errors(json.loads(ENCODER.encode(order))))
    assert not errors, errors[0].message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(platform=st.sampled_from(sorted(ADAPTERS)), body=st.binary(max_size=300))
def test_arbitrary_bytes(platform: str, body: bytes) -> None:
    """Random bytes never raise anything but TranslationError."""
    _check(platform, body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(platform=st.sampled_from(sorted(ADAPTERS)), value=json_values)
def test_arbitrary_json(platform: str, value: Any) -> None:
    """Random JSON documents never raise anything but TranslationError."""
    _check(platform, json.dumps(value).encode())


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    platform=st.sampled_from(sorted(ADAPTERS)),
    seed=st.integers(min_value=0, max_value=100),
    mutations=st.lists(st.tuples(st.lists(st.integers(0, 50), min_size=1, max_size=5), json_values), max_size=4),
)
def test_mutated_real_orders(platform: str, seed: int, mutations: list[tuple[list[int], Any]]) -> None:
    """Real orders with random fields replaced give a valid order or an error that leaks no value."""
    samples = SEEDS[platform]
    value = samples[seed % len(samples)]
    for path, replacement in mutations:
        value = mutate(value, path, replacement)
    planted = [s for _, replacement in mutations for s in _strings(replacement)]
    _check(platform, json.dumps(value).encode(), planted)


def test_deeply_nested_and_huge_numbers() -> None:
    """Pathological JSON (deep nesting, 5,000-digit ids, huge exponents) is refused cleanly."""
    for platform in ADAPTERS:
        _check(platform, b"[" * 100_000 + b"]" * 100_000)
        _check(platform, b'{"id": ' + b"9" * 5000 + b', "line_items": []}')
        _check(platform, b'{"id": 1, "total_price": 1e999999, "line_items": [{"price": "1e999999", "quantity": 1}]}')
        _check(platform, b'{"id": 1, "skipped": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")  # RecursionError
        _check(platform, b'{"id": 1, "name": "#10\xff", "line_items": []}')  # invalid UTF-8 in a string
