"""Real-browser check of the Prefect UI (scripts/ui_check.py); opt-in: RUN_BROWSER_TESTS=1.

Needs Debian's chromium + chromium-driver and `pip install -e '.[browser]'` (selenium).
Takes ~3 min (Prefect server, the session's seeded Reflexio stack, served deployment,
browser; a custom run from the form, then a run paused for approval rejected and one approved
in the UI).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.stack import LocalStack
from tests.conftest import SEEDED

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        os.environ.get("RUN_BROWSER_TESTS") != "1",
        reason="browser check is opt-in: set RUN_BROWSER_TESTS=1 (needs chromium, ~3 min)",
    ),
    pytest.mark.skipif(
        not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()),
        reason="needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium "
        "chromium-driver)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("selenium") is None,
        reason="needs selenium: pip install -e '.[browser]'",
    ),
]


@pytest.fixture
def seeded_then_restored(seeded_stack: LocalStack) -> Iterator[LocalStack]:
    """The session's seeded server (the check upgrades its rows), seeded again after."""
    yield seeded_stack
    seeded_stack.restore(SEEDED)


@pytest.mark.timeout(900)
def test_custom_run_from_the_form_and_approval_in_the_resume_form(
    tmp_path: Path, seeded_then_restored: LocalStack
) -> None:
    shots = tmp_path / "screenshots"
    script = [sys.executable, str(ROOT / "scripts" / "ui_check.py"), "--shots", str(shots)]
    proc = subprocess.run(
        [*script, "--reflexio-url", seeded_then_restored.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    output = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, output
    assert list(shots.glob("*-gate-report-artifact.png")), output
    assert "reject: FAILED Not upgraded: Rejected by bob" in output
    assert "approve: COMPLETED Upgraded:" in output
    assert list(shots.glob("*-reject-needs-a-reason.png")), output
    assert list(shots.glob("*-approved-summary.png")), output
