"""Golden tests: every fixture body → the exact Sendcloud order (or translation error) expected.

Each file in `tests/fixtures/<platform>/` is translated twice: with the spec's currencies
(EUR, GBP, USD) and with a wider set, as a deployment that configures more currencies would.
The expected output lives in `tests/golden/<platform>/<fixture>.json`; a `<fixture>.wide.json`
exists only where the wider set changes the result. Every produced order must also pass the
published OpenAPI schema.

After a deliberate mapping change: `UPDATE_GOLDEN=1 pytest tests/test_golden.py`, then read
the diff of `tests/golden/` before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapters import ADAPTERS, DEFAULT_CURRENCIES, TranslationError, get_adapter
from adapters.sendcloud import ENCODER
from tests.sendcloud_schema import order_validator

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"
WIDE = DEFAULT_CURRENCIES | {"AUD", "CAD", "HKD", "INR", "JPY", "PLN"}
INTEGRATION_ID = 7
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

CASES = [(platform, path) for platform in sorted(ADAPTERS) for path in sorted((FIXTURES / platform).glob("*.json"))]


def _produce(platform: str, body: bytes, currencies: frozenset[str]) -> object:
    try:
        order = get_adapter(platform, currencies).translate(body, INTEGRATION_ID)
    except TranslationError as exc:
        return {"error": str(exc.reason), "detail": exc.detail}
    produced = json.loads(ENCODER.encode(order))
    errors = sorted(order_validator(currencies).iter_errors(produced), key=str)
    assert not errors, f"order breaks the published schema: {errors[0].message} at {list(errors[0].absolute_path)}"
    return produced


def _write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@pytest.mark.parametrize(("platform", "fixture"), CASES, ids=[f"{p}/{f.stem}" for p, f in CASES])
def test_fixture_translates_to_golden(platform: str, fixture: Path) -> None:
    """Each fixture gives exactly its golden order or error, with default and with wider currencies."""
    body = fixture.read_bytes()
    default, wide = _produce(platform, body, DEFAULT_CURRENCIES), _produce(platform, body, WIDE)
    default_file = GOLDEN / platform / f"{fixture.stem}.json"
    wide_file = GOLDEN / platform / f"{fixture.stem}.wide.json"
    if UPDATE:
        _write(default_file, default)
        if wide != default:
            _write(wide_file, wide)
        elif wide_file.exists():
            wide_file.unlink()
    assert json.loads(default_file.read_text(encoding="utf-8")) == default
    expected_wide = wide_file if wide_file.exists() else default_file
    assert json.loads(expected_wide.read_text(encoding="utf-8")) == wide


def test_every_golden_file_has_a_fixture() -> None:
    """No stale golden files: each one belongs to a fixture that still exists."""
    fixtures = {(p, f.stem) for p, f in CASES}
    for golden in GOLDEN.glob("*/*.json"):
        stem = golden.name.removesuffix(".json").removesuffix(".wide")
        assert (golden.parent.name, stem) in fixtures, f"{golden} has no fixture"
