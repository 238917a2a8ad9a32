"""The lock files agree with pyproject.toml, with each other and with what is installed.

`make run` and `make test` install requirements-dev.lock; the image installs requirements.lock.
If these drift (a dependency added to pyproject but not locked, a pin left behind after one was
removed, a version outside pyproject's range, the two locks pinning different versions), a fresh
clone would test against something other than what CI was green with, or than the image ships.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
#: pip-compile --allow-unsafe pins these when something in the graph needs them
_INSTALLERS = {"pip", "setuptools"}


def _lock(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    pins: dict[str, str] = {canonicalize_name(m[1]): m[2] for m in _PIN.finditer(text)}
    assert pins, f"{name} pins nothing"
    return pins


def _closure(roots: list[Requirement], extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `roots` need, transitively, by the installed metadata on this interpreter."""
    environment: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    needed: set[str] = set()
    todo = [(r, extras) for r in roots]
    while todo:
        requirement, wanted_extras = todo.pop()
        markers_env: list[dict[str, str]] = [{**environment, "extra": e} for e in (wanted_extras or {""})]
        if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in markers_env):
            continue
        name = canonicalize_name(requirement.name)
        key_extras = frozenset(requirement.extras)
        if name in needed and not key_extras:
            continue
        needed.add(name)
        for dependency in metadata.requires(requirement.name) or []:
            todo.append((Requirement(dependency), key_extras))
    return needed


RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
DEV = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
BUILD = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]


@pytest.mark.parametrize(
    ("lock", "roots"),
    [("requirements.lock", RUNTIME), ("requirements-dev.lock", RUNTIME + DEV + BUILD)],
)
def test_lock_pins_exactly_what_pyproject_needs(lock: str, roots: list[Requirement]) -> None:
    """Every dependency (and each of theirs) is pinned, within pyproject's range; nothing else is."""
    pins = _lock(lock)
    for requirement in roots:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}"
        )
    needed = _closure(roots)
    assert not needed - set(pins), f"needed but not locked in {lock}: {sorted(needed - set(pins))}"
    extra = set(pins) - needed - _INSTALLERS
    assert not extra, f"locked in {lock} but nothing in pyproject.toml needs them: {sorted(extra)}"


def test_dev_lock_pins_the_runtime_versions() -> None:
    """The tests run on the versions the image ships: the dev lock repeats every runtime pin."""
    runtime, dev = _lock("requirements.lock"), _lock("requirements-dev.lock")
    differ = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not differ, f"requirements.lock vs requirements-dev.lock: {differ}"


def test_every_lock_line_carries_a_hash_and_no_index() -> None:
    """--require-hashes refuses a lock with an unhashed pin; catch it here rather than at install.
    No index or find-links line: the lock must not name where this machine found its packages."""
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        assert not re.search(r"^\s*(-e|--find-links|--index-url|--extra-index-url)\b", text, flags=re.MULTILINE)
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
        for block in blocks:
            if _PIN.match(block):
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"


def test_installed_versions_are_the_locked_ones() -> None:
    """This test run itself uses the locked versions (the venv was installed from the dev lock)."""
    pins = _lock("requirements-dev.lock")
    installed = {name: metadata.version(name) for name in pins if name not in _INSTALLERS and _is_installed(name)}
    missing = sorted(set(pins) - _INSTALLERS - set(installed))
    assert not missing, f"locked but not installed: {missing} — run `make` again"
    differ = {name: (pins[name], version) for name, version in installed.items() if version != pins[name]}
    assert not differ, f"locked vs installed: {differ} — the venv is stale, `rm -r .venv` and `make test`"


def _is_installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_make_installs_from_the_dev_lock_with_hashes() -> None:
    """The venv `make run` and `make test` use comes from the dev lock, by hash, and the project
    itself adds nothing unlocked (--no-deps, no build isolation)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.partition("\n$(STAMP):")[2].partition("\n\n")[0]
    assert "requirements-dev.lock" in recipe.partition("\n")[0], "the venv must be rebuilt when the lock changes"
    assert "--require-hashes --no-deps -r requirements-dev.lock" in recipe
    assert "--no-deps --no-build-isolation -e ." in recipe
    lock = makefile.partition("\nlock:")[2].partition("\n\n")[0]
    assert "--output-file requirements.lock pyproject.toml" in lock
    assert "--extra dev --all-build-deps --constraint requirements.lock --output-file requirements-dev.lock" in lock
