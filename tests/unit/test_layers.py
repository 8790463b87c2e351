"""The layers stay apart: reflexio_api, core and gate never import Prefect (DESIGN.md).

Every module of each package is imported (found on disk, so a new module is covered
without editing this test) in a fresh interpreter, which then must not have Prefect loaded.
The engine (core.regeneration, its phases) and the run journal (core.journal) are among
them by name: flows/ and tasks/ alone hold Prefect's tasks, pause, events and artifacts.
"""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reflexio_api", "gate", "core")
PREFECT_FREE = {"core": {"core.regeneration", "core.journal"}}
"""Modules that must stay in a Prefect-free package (a move out of it fails here)."""


def modules_of(package: str) -> list[str]:
    """The package and every module in it."""
    found = pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")
    return [package, *sorted(m.name for m in found)]


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_no_prefect(package: str) -> None:
    modules = modules_of(package)
    assert len(modules) > 2, modules
    assert PREFECT_FREE.get(package, set()) <= set(modules), modules
    code = (
        f"import sys; import {', '.join(modules)}; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'prefect_dask'));"
        "sys.exit(', '.join(loaded[:5]) or None)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{package} loads Prefect: {done.stderr.strip()[-500:]}"
