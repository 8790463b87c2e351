"""Slow (`make test-all`): a restore after a nightly at production size brings every row
back (the server of tests/integration/at_size.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.kinds import PROFILE_KEYS, comparable
from core.outcome import Decision, RegenerationOutcome
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from tests.integration.at_size import SLOW_TIMEOUT_S
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration


def nightly_run(url: str, backup_dir: Path) -> RegenerationOutcome:
    """A nightly profile regeneration that must upgrade; its outcome (the backup's name)."""
    state = profile_regeneration(reflexio_url=url, backup_dir=backup_dir, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED
    return outcome


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
def test_restore_at_size_brings_every_row_back(large_stack, prefect_api, tmp_path: Path):
    """Slow: the server re-embeds every re-created row (about 80 ms a row here)."""
    url = large_stack.url
    before_rows = profile_rows(url, "current", "archived")
    outcome = nightly_run(url, tmp_path)

    restored = restore_profiles(
        reflexio_url=url,
        backup_file=outcome.backup,
        records_dir=tmp_path,
        assume_no_erasures=True,  # nobody was erased: there is no record to read,
        return_state=True,
    )

    assert restored.is_completed(), restored.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        before_rows, PROFILE_KEYS
    )
