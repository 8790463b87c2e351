"""Reliability fixtures: the session's real server behind a fault proxy, in a clean state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from local_stack.bulk_seed import ProfileSeed, SeedResult, UserPlaybookSeed
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.check_record import delete_record
from tests.conftest import SEEDED, SEEDED_CONFIG, SEEDED_COUNTS, profile_counts
from tests.reliability.helpers import operation_running, release_lock
from tests.tally import claimed


@pytest.fixture
def clean_stack(stack: LocalStack) -> LocalStack:
    """The session stack in a consistent state: nothing PENDING, no operation running, no
    stall, the seeded config, the stand-in answering normally. Restores the seeded snapshot
    (~5-10 s) only when an earlier test left it otherwise: tests compare against their own
    snapshot."""
    stack.llm.reset()
    with ReflexioClient(ReflexioSettings(url=stack.url)) as client:
        stalled = client.get_stall_state().stalled
        config = client.get_config()
    counts = profile_counts(stack.url)
    if counts["pending"] or stalled or operation_running(stack.url) or config != SEEDED_CONFIG:
        stack.restore(SEEDED)
    elif counts["current"] != SEEDED_COUNTS["current"]:
        # Another test left more (or fewer) CURRENT rows than the seed: a rerun of the seed's
        # conversations would then look like a loss to the gate's volume check.
        stack.restore(SEEDED)
    return stack


PRODUCTION = "production"
"""The snapshot of a production-shaped server (see `production`)."""
PRODUCTION_STALE = "production-stale"
"""PRODUCTION plus 25,000 PENDING profiles a killed rerun left (H5)."""
ROWS_PER_STATUS = 25_000
BULK_USERS = 2_500


@pytest.fixture(scope="session")
def production(stack: LocalStack) -> SeedResult:
    """Seed (once per session, ~1 min) and snapshot a production-shaped server: the seeded
    users (conversations over chat and email, CURRENT profiles and v1 playbooks) plus
    25,000 rows per status of 2,500 more users: CURRENT profiles over three sources,
    ARCHIVED profiles (12,000 in one second, as after a large upgrade), v1 ARCHIVED
    playbooks, v2 CURRENT and ARCHIVED playbooks; PRODUCTION_STALE adds 25,000 PENDING
    profiles. The stack is left seeded: tests ask for `production_stack`."""
    stack.restore(SEEDED)
    users = BULK_USERS
    result = stack.bulk_seed(
        [
            ProfileSeed("current", ROWS_PER_STATUS, users, sources=("chat", "email", "voice")),
            ProfileSeed("archived", ROWS_PER_STATUS, users, same_second=12_000),
            UserPlaybookSeed("v1", "archived", ROWS_PER_STATUS, users),
            UserPlaybookSeed("v2", "current", ROWS_PER_STATUS, users),
            UserPlaybookSeed("v2", "archived", ROWS_PER_STATUS, users),
        ]
    )
    stack.snapshot(PRODUCTION)
    stale = stack.bulk_seed([ProfileSeed("pending", ROWS_PER_STATUS, users)])
    stack.snapshot(PRODUCTION_STALE)
    stack.restore(SEEDED)
    return SeedResult(
        result.profiles + stale.profiles, result.user_playbooks, result.seconds + stale.seconds
    )


@pytest.fixture
def production_stack(stack: LocalStack, production: SeedResult) -> Iterator[LocalStack]:
    """The stack in the PRODUCTION snapshot; seeded again afterwards."""
    stack.restore(PRODUCTION)
    yield stack
    stack.restore(SEEDED)


@pytest.fixture
def stale_production_stack(stack: LocalStack, production: SeedResult) -> Iterator[LocalStack]:
    """The stack in the PRODUCTION_STALE snapshot; seeded again afterwards."""
    stack.restore(PRODUCTION_STALE)
    yield stack
    stack.restore(SEEDED)


@pytest.fixture
def proxy(stack: LocalStack, prefect_api: None) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's server (no rules yet), its lock free and no
    prompt-check record under its name: both are named by the proxy's port, which an
    earlier test's proxy may have had."""
    with FaultProxy(stack.url, max_lifetime_s=900) as running:
        release_lock(running.url)
        delete_record(running.url)
        yield running


@pytest.fixture
def measured() -> Counter[str]:
    """The running test's claims for the suite's tally: they count only if it passes
    (tests/tally.py)."""
    return claimed()
