"""The lock files `make`, CI, a worker and the image install from: pinned, hash-checked, in
step with each other, with pyproject.toml and with the environment the tests run in."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements-dev.lock"
RUNTIME_LOCK = ROOT / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)(.*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """Package -> pinned version; ValueError naming a requirement that is not `==` pinned
    with hashes."""
    found: dict[str, str] = {}
    lines = lock.read_text().splitlines()
    for index, line in enumerate(lines):
        if not line or line[0] in " #":
            continue
        match = _PIN.match(line)
        if not match or "--hash=sha256:" not in "\n".join(lines[index : index + 3]):
            raise ValueError(f"{lock.name}: {line!r} is not pinned with == and its hashes")
        found[_norm(match.group(1))] = match.group(2)
    return found


def _requirement_names(specs: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in specs}


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("lock", [DEV_LOCK, RUNTIME_LOCK], ids=lambda p: p.name)
def test_prefect_is_pinned_to_the_tested_minor_version(lock: Path):
    assert pins(lock)["prefect"].startswith("3.9."), "pacing was tested on Prefect 3.9"


def test_the_runtime_lock_holds_the_dev_lock_versions():
    dev, runtime = pins(DEV_LOCK), pins(RUNTIME_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_every_dependency_of_pyproject_is_locked():
    extras = PROJECT["optional-dependencies"]
    dev_specs = PROJECT["dependencies"] + [s for e in extras.values() for s in e]
    runtime_specs = PROJECT["dependencies"] + extras["dask"] + extras["s3"]
    assert _requirement_names(dev_specs) <= set(pins(DEV_LOCK))
    assert _requirement_names(runtime_specs) <= set(pins(RUNTIME_LOCK))


def test_the_tests_run_on_the_locked_prefect_and_pydantic():
    """`make` installs from the dev lock: a venv that drifted from it is caught here."""
    locked = pins(DEV_LOCK)
    for package in ("prefect", "pydantic", "httpx", "pandas"):
        assert version(package) == locked[package], package


def test_an_unpinned_requirement_is_named(tmp_path: Path):
    lock = tmp_path / "broken.lock"
    lock.write_text("prefect>=3.9 \\\n    --hash=sha256:00\n")
    with pytest.raises(ValueError, match=r"'prefect>=3\.9 .*' is not pinned"):
        pins(lock)
