"""Rows written by local_stack.bulk_seed behave like rows the server wrote: counted, listed,
upgraded and deleted by identity. 25,000 ARCHIVED profiles (12,000 in one second), 2,000
CURRENT and 2,000 PENDING for other users, and user playbooks of two agent_versions.

The module seeds the session stack once (~15 s) on top of its seeded data and puts the
seeded snapshot back at the end. The delete and upgrade tests come last: they change the
data, in file order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from local_stack.bulk_seed import ProfileSeed, SeedResult, SeedStatus, UserPlaybookSeed
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient
from reflexio_api.models import Profile, ProfileStatistics
from tests.conftest import SEEDED
from tests.integration.conftest import client_for

# ~75 s: the server's own listing and upgrade at 25,000 rows; CI runs the pipeline at that
# size in test_pipeline_at_size.py, `make test-all` these too.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAME_SECOND = 12_000
SPECS = (
    ProfileSeed("archived", 25_000, users=2_500, id_prefix="bulka", same_second=SAME_SECOND),
    ProfileSeed("current", 2_000, users=400, id_prefix="bulkc", sources=("chat", "email")),
    ProfileSeed("pending", 2_000, users=400, id_prefix="bulkc", sources=("chat", "email")),
    UserPlaybookSeed("bulk-v1", "current", 300, users=30, id_prefix="pb"),
    UserPlaybookSeed("bulk-v1", "pending", 200, users=30, id_prefix="pb"),
    UserPlaybookSeed("bulk-v2", "current", 100, users=30, id_prefix="pb"),
    UserPlaybookSeed("bulk-v2", "pending", 50, users=30, id_prefix="pb"),
)


@dataclass(frozen=True)
class Bulk:
    """The seeded server: a client, what was written, and the counts before seeding."""

    stack: LocalStack
    client: ReflexioClient
    result: SeedResult
    before: ProfileStatistics


@pytest.fixture(scope="module")
def bulk(stack: LocalStack) -> Iterator[Bulk]:
    """The session stack with its seeded data plus SPECS; the seeded snapshot afterwards."""
    stack.restore(SEEDED)
    try:
        with client_for(stack) as client:
            before = client.get_profile_statistics()
            yield Bulk(stack, client, stack.bulk_seed(SPECS), before)
    finally:
        stack.restore(SEEDED)


def listed_profiles(bulk: Bulk, status: SeedStatus) -> list[Profile]:
    """Every profile in one status, through the client's complete listing."""
    return bulk.client.list_profiles(status)


def listed_playbooks(bulk: Bulk, status: SeedStatus | None, agent_version: str) -> set[int]:
    """The ids of one agent_version's user playbooks (no status: every live one)."""
    rows = bulk.client.list_user_playbooks(status, agent_version=agent_version)
    return {playbook.user_playbook_id for playbook in rows}


def ids(rows: list[Profile]) -> set[str]:
    """The profile ids of listed rows."""
    return {row.profile_id for row in rows}


def test_seeding_25k_rows_takes_seconds(bulk: Bulk) -> None:
    assert bulk.result.rows == 29_650
    assert bulk.result.seconds < 30, f"{bulk.result.rows_per_second:,.0f} rows/s"


def test_statistics_count_the_seeded_rows(bulk: Bulk) -> None:
    stats = bulk.client.get_profile_statistics()
    assert stats.archived_count == bulk.before.archived_count + 25_000
    assert stats.current_count == bulk.before.current_count + 2_000
    assert stats.pending_count == bulk.before.pending_count + 2_000


def test_listing_returns_every_seeded_archived_row_with_12000_in_one_second(bulk: Bulk) -> None:
    archived = listed_profiles(bulk, "archived")
    assert ids(archived) >= bulk.result.profile_ids("archived")
    assert len(archived) == bulk.before.archived_count + 25_000
    seconds = Counter(row.last_modified_timestamp for row in archived)
    assert seconds.most_common(1)[0][1] == SAME_SECOND
    sample = next(row for row in archived if row.profile_id == "bulka-archived-0000007")
    assert sample.user_id == "bulka-user-000007"
    assert sample.generated_from_request_id and sample.source == "chat"
    assert len({row.content for row in archived}) == len(archived), "contents differ"


def test_user_playbooks_are_listed_per_agent_version_and_status(bulk: Bulk) -> None:
    for version in ("bulk-v1", "bulk-v2"):
        current = bulk.result.user_playbook_ids(version, "current")
        pending = bulk.result.user_playbook_ids(version, "pending")
        assert listed_playbooks(bulk, None, version) == current | pending
        assert listed_playbooks(bulk, "current", version) == current
        assert listed_playbooks(bulk, "pending", version) == pending
    assert len(bulk.result.user_playbook_ids("bulk-v1", "current")) == 300


def test_delete_by_ids_removes_seeded_rows(bulk: Bulk) -> None:
    doomed = ["bulkc-current-0000000", "bulkc-current-0000001", "bulkc-current-0000002"]
    assert bulk.client.delete_profiles(doomed).deleted_count == 3
    assert not ids(listed_profiles(bulk, "current")) & set(doomed)
    stats = bulk.client.get_profile_statistics()
    assert stats.current_count == bulk.before.current_count + 2_000 - 3


def test_profile_upgrade_and_downgrade_move_exactly_the_seeded_rows(
    bulk: Bulk,
) -> None:
    current_before = ids(listed_profiles(bulk, "current"))
    started = int(time.time())
    outcome = bulk.client.upgrade_profiles(only_affected_users=False)
    assert outcome.profiles_deleted == bulk.before.archived_count + 25_000
    assert outcome.profiles_archived == len(current_before)
    assert outcome.profiles_promoted == 2_000
    archived = listed_profiles(bulk, "archived")
    assert ids(archived) == current_before
    assert not ids(archived) & bulk.result.profile_ids("archived")
    assert ids(listed_profiles(bulk, "current")) == bulk.result.profile_ids("pending")
    # The upgrade stamps its own time on every row it moves (one second for thousands).
    assert all(row.last_modified_timestamp >= started for row in archived)
    outcome = bulk.client.downgrade_profiles(only_affected_users=False)
    assert (outcome.profiles_demoted, outcome.profiles_restored) == (2_000, len(current_before))
    assert ids(listed_profiles(bulk, "current")) == current_before
    assert ids(listed_profiles(bulk, "archived")) == bulk.result.profile_ids("pending")


def test_user_playbook_upgrade_moves_only_its_agent_version(bulk: Bulk) -> None:
    outcome = bulk.client.upgrade_user_playbooks("bulk-v1")
    assert (outcome.user_playbooks_archived, outcome.user_playbooks_promoted) == (300, 200)
    seeded = bulk.result.user_playbook_ids
    assert listed_playbooks(bulk, "current", "bulk-v1") == seeded("bulk-v1", "pending")
    assert listed_playbooks(bulk, "archived", "bulk-v1") == seeded("bulk-v1", "current")
    assert listed_playbooks(bulk, "current", "bulk-v2") == seeded("bulk-v2", "current")
    assert listed_playbooks(bulk, "pending", "bulk-v2") == seeded("bulk-v2", "pending")
