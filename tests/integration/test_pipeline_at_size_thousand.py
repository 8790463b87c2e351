"""Slow (`make test-all`): the nightly at production size regenerates 1,000 users (the
server of tests/integration/at_size.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.stack import LocalStack
from tests.integration.at_size import (
    SLOW_TALKING,
    SLOW_TALKING_TIMEOUT_S,
    assert_nightly_regenerates_the_talking_users,
    seeded_at_size,
)

pytestmark = pytest.mark.integration


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TALKING_TIMEOUT_S)
def test_nightly_run_at_size_regenerates_a_thousand_users_and_loses_nothing(
    stack: LocalStack, prefect_api, tmp_path: Path
):
    """Slow (issue 20's size: >= 1,000 users regenerated): about 1 CPU-second a user in the
    server's searches at this size; CI runs the same checks with TALKING users."""
    with seeded_at_size(stack, SLOW_TALKING, "large-1000") as seeded:
        assert len(seeded.talking_users()) == SLOW_TALKING
        assert_nightly_regenerates_the_talking_users(stack.url, seeded, tmp_path)
