"""Contract of the client against the real server: reads, bad input, and calls whose
effects are undone in the test (config, stall row, a throwaway user).

All on the session stack, restored once to its seeded data at module start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from local_stack.bulk_seed import ProfileSeed, UserPlaybookSeed, seed_rows
from local_stack.stack import LocalStack
from reflexio_api import ClientError, ReflexioClient
from reflexio_api.models import Profile, ProfileStatistics
from tests.conftest import SEEDED
from tests.integration.conftest import client_for, run_to_end

pytestmark = pytest.mark.integration

SEEDED_USERS = {"alice", "bob", "carol", "dave", "erin", "frank"}
SOURCES = ("chat", "email")


@pytest.fixture(scope="module")
def reads(stack: LocalStack) -> Iterator[ReflexioClient]:
    """A client on the session stack, put back to its seeded data once for this module."""
    stack.restore(SEEDED)
    with client_for(stack) as opened:
        yield opened


def _ids(profiles: list[Profile]) -> set[str]:
    return {profile.profile_id for profile in profiles}


def test_health_reports_healthy(reads: ReflexioClient) -> None:
    assert reads.health().status == "healthy"


def test_profile_statistics_agree_with_the_listings(reads: ReflexioClient) -> None:
    stats = reads.get_profile_statistics()
    assert isinstance(stats, ProfileStatistics)
    assert stats.current_count == len(reads.list_profiles("current")) > 0
    assert stats.pending_count == len(reads.list_profiles("pending")) == 0
    assert stats.archived_count == len(reads.list_profiles("archived")) == 0


def test_list_profiles_by_status_carries_rows_of_every_seeded_user(reads: ReflexioClient) -> None:
    current = reads.list_profiles("current")
    assert {profile.user_id for profile in current} == SEEDED_USERS
    assert all(profile.status is None for profile in current), "CURRENT is an absent status"
    assert all(profile.content and profile.generated_from_request_id for profile in current)
    assert len(_ids(current)) == len(current)


def test_list_profiles_by_user_and_by_source_are_exact_filters(reads: ReflexioClient) -> None:
    current = reads.list_profiles("current")
    alice = reads.list_profiles("current", user_id="alice")
    assert alice and {profile.user_id for profile in alice} == {"alice"}
    assert _ids(alice) == {p.profile_id for p in current if p.user_id == "alice"}

    by_source = {source: reads.list_profiles("current", source=source) for source in SOURCES}
    for source, rows in by_source.items():
        assert rows, f"no CURRENT profile from source {source}"
        assert {profile.source for profile in rows} == {source}
    assert _ids(by_source["chat"]) | _ids(by_source["email"]) == _ids(current)
    assert reads.list_profiles("current", user_id="alice", source="chat")
    assert reads.list_profiles("current", source="no-such-source") == []


def test_small_pages_list_the_same_rows_each_once(reads: ReflexioClient) -> None:
    pages = list(reads.iter_profiles("current", page_size=2))
    listed = [row.profile_id for page in pages for row in page]
    assert all(len(page) <= 2 for page in pages)
    assert len(listed) == len(set(listed))
    assert set(listed) == _ids(reads.list_profiles("current"))
    playbooks = [
        row.user_playbook_id for page in reads.iter_user_playbooks(page_size=2) for row in page
    ]
    assert sorted(playbooks) == sorted(p.user_playbook_id for p in reads.list_user_playbooks())


def test_get_user_profiles_matches_the_listing_for_that_user(reads: ReflexioClient) -> None:
    listed = _ids(reads.list_profiles("current", user_id="bob"))
    assert _ids(reads.get_user_profiles("bob")) == listed
    every_status = reads.get_user_profiles("bob", statuses=("current", "pending", "archived"))
    assert _ids(every_status) == listed, "seeded data has no PENDING or ARCHIVED rows"
    assert reads.get_user_profiles("bob", statuses=("pending",)) == []
    assert reads.get_user_profiles("nobody-at-all") == []


def test_list_user_playbooks_filters_by_user_status_and_agent_version(
    reads: ReflexioClient,
) -> None:
    every = reads.list_user_playbooks()
    assert {playbook.user_id for playbook in every} == SEEDED_USERS
    assert {playbook.agent_version for playbook in every} == {"v1"}
    current = reads.list_user_playbooks(status="current")
    assert {p.user_playbook_id for p in current} == {p.user_playbook_id for p in every}
    assert all(playbook.status is None for playbook in current)
    assert reads.list_user_playbooks(status="pending") == []
    carol = reads.list_user_playbooks(user_id="carol")
    assert carol and {playbook.user_id for playbook in carol} == {"carol"}
    assert reads.list_user_playbooks(agent_version="v1") == every
    assert reads.list_user_playbooks(agent_version="v-none") == []


def test_list_agent_playbooks_filters_by_agent_version_and_approval(
    reads: ReflexioClient,
) -> None:
    every = reads.list_agent_playbooks()
    assert every, "seeding aggregates user playbooks into agent playbooks"
    assert {playbook.agent_version for playbook in every} == {"v1"}
    assert all(playbook.content for playbook in every)
    pending = reads.list_agent_playbooks(agent_version="v1", playbook_status="pending")
    assert {p.agent_playbook_id for p in pending} == {p.agent_playbook_id for p in every}
    assert reads.list_agent_playbooks(playbook_status="approved") == []
    assert reads.list_agent_playbooks(agent_version="v-none") == []


def test_get_config_has_the_documented_fields(reads: ReflexioClient) -> None:
    config = reads.get_config()
    assert "storage_config" in config
    assert 0 < config["stride_size"] <= config["window_size"]
    assert "manual_trigger" in config["profile_extractor_config"]
    assert "request_sources_enabled" in config["profile_extractor_config"]
    assert "allow_manual_trigger" not in config


def test_update_config_merges_top_level_and_set_config_restores_it(
    reads: ReflexioClient,
) -> None:
    original = reads.get_config()
    changed_window = original["window_size"] + 3
    try:
        assert reads.update_config({"window_size": changed_window}).msg
        updated = reads.get_config()
        assert updated["window_size"] == changed_window
        assert updated["profile_extractor_config"] == original["profile_extractor_config"]
    finally:
        reads.set_config(original)
    assert reads.get_config() == original


def test_stall_state_follows_the_stall_row_and_can_be_marked_notified(
    stack: LocalStack, reads: ReflexioClient
) -> None:
    assert reads.get_stall_state().stalled is False
    assert reads.mark_stall_notified().notified_in_cc is False, "a no-op when not stalled"
    try:
        stack.set_stall("billing_error", "quota exhausted")
        stalled = reads.get_stall_state()
        assert stalled.stalled is True
        assert stalled.reason == "billing_error"
        assert isinstance(stalled.stalled_at, datetime)
        assert stalled.error_message == "quota exhausted"
        assert stalled.notified_in_cc is False
        assert reads.mark_stall_notified().notified_in_cc is True
        assert reads.get_stall_state().notified_in_cc is True
        stack.set_stall("auth_error")
        assert reads.get_stall_state().reason == "auth_error"
    finally:
        stack.clear_stall()
    cleared = reads.get_stall_state()
    assert (cleared.stalled, cleared.reason, cleared.stalled_at) == (False, None, None)


def test_cancel_with_nothing_running_cancels_nothing(reads: ReflexioClient) -> None:
    assert reads.cancel_operation().cancelled_services == []
    assert reads.cancel_operation("playbook_generation").cancelled_services == []


def test_manual_profile_generation_for_an_unknown_user_counts_zero(
    reads: ReflexioClient,
) -> None:
    before = reads.get_profile_statistics()
    result = reads.manual_profile_generation(user_id="nobody-manual")
    assert result.profiles_generated == 0
    assert reads.get_profile_statistics() == before


def test_clear_user_data_for_an_unknown_user_counts_zero(reads: ReflexioClient) -> None:
    result = reads.clear_user_data("nobody-clear")
    assert result.deleted_counts, "the per-table counts are reported"
    assert set(result.deleted_counts.values()) == {0}
    assert {"interactions", "profiles", "user_playbooks", "requests"} <= set(result.deleted_counts)


def test_rerun_for_an_unknown_user_ends_failed_never_success(reads: ReflexioClient) -> None:
    started = reads.rerun_profile_generation(user_id="nobody-rerun")
    final, seen = run_to_end(reads, "profile_generation", started.operation_id)
    assert final.status == "failed"
    assert final.operation_id == started.operation_id
    assert "No interactions found" in (final.error_message or "")
    assert seen and seen[-1] == final


def test_publishing_an_empty_interaction_list_is_a_client_error(reads: ReflexioClient) -> None:
    with pytest.raises(ClientError) as caught:
        reads.publish_interaction("nobody-publish", "s-1", "chat", "v1", [])
    assert caught.value.status_code == 422
    assert "interaction_data_list" in caught.value.detail
    assert "at least 1 item" in str(caught.value)


def test_publishing_without_session_id_is_a_client_error(reads: ReflexioClient) -> None:
    turn = {"role": "user", "content": "hello"}
    with pytest.raises(ClientError) as caught:
        reads.publish_interaction("nobody-publish", None, "chat", "v1", [turn])  # type: ignore[arg-type]
    assert caught.value.status_code == 422
    assert "session_id: Field required" in str(caught.value)


def test_a_bad_datetime_is_a_client_error_and_starts_nothing(reads: ReflexioClient) -> None:
    before = reads.get_operation_status("profile_generation")
    with pytest.raises(ClientError) as caught:
        reads.rerun_profile_generation(start_time="last tuesday")  # type: ignore[arg-type]
    assert caught.value.status_code == 422
    assert "start_time" in caught.value.detail
    assert "last tuesday" not in str(caught.value), "the rejected input is not echoed"
    assert reads.get_operation_status("profile_generation") == before


def test_publish_delete_and_clear_user_data_round_trip(reads: ReflexioClient) -> None:
    """A throwaway user: published, partly deleted by id, then cleared; stats end unchanged."""
    user = f"contract-{uuid.uuid4().hex[:8]}"
    before = reads.get_profile_statistics()
    turns = [
        {"role": "user", "content": "I'm Gina, a cellist in Vienna who practises every morning."},
        {"role": "assistant", "content": "Understood, I will keep that in mind."},
        {"role": "user", "content": "Please write to me in German when possible."},
        {"role": "assistant", "content": "Understood, I will keep that in mind."},
    ]
    published = reads.publish_interaction(
        user, "gina-1", "chat", "v1", turns, wait_for_response=True, force_extraction=True
    )
    assert published.request_id
    assert published.warnings == []

    profiles = reads.list_profiles("current", user_id=user)
    playbooks = reads.list_user_playbooks(user_id=user)
    assert profiles, "learning ran synchronously and made CURRENT profiles"
    assert playbooks, "and user playbooks"
    assert reads.delete_profiles([profiles[0].profile_id]).deleted_count == 1
    assert reads.delete_user_playbooks([playbooks[0].user_playbook_id]).deleted_count == 1
    assert reads.delete_profiles([profiles[0].profile_id]).deleted_count == 0
    assert _ids(reads.list_profiles("current", user_id=user)) == _ids(profiles[1:])

    cleared = reads.clear_user_data(user).deleted_counts
    assert cleared["interactions"] == len(turns)
    assert cleared["profiles"] == len(profiles) - 1
    assert cleared["user_playbooks"] + cleared["purged_user_playbooks"] >= len(playbooks) - 1
    assert cleared["requests"] == 1
    assert reads.list_profiles("current", user_id=user) == []
    assert reads.list_user_playbooks(user_id=user) == []
    assert reads.get_profile_statistics() == before


def test_client_follows_a_failing_rerun_by_id(reads: ReflexioClient) -> None:
    started = reads.rerun_profile_generation(user_id="nobody-sync")
    final, _ = run_to_end(reads, "profile_generation", started.operation_id)
    assert final.operation_id == started.operation_id
    assert final.status == "failed"


def test_listings_are_complete_when_thousands_share_a_second(
    stack: LocalStack, reads: ReflexioClient
) -> None:
    """H13 on the real server: 3,000 ARCHIVED profiles (1,500 in one second) and 2,000
    user playbooks (800 in one second) come back exactly, through 500-row pages."""
    stack.server.stop()
    try:
        seeded = seed_rows(
            stack.server.db_path,
            [
                ProfileSeed("archived", 3_000, users=40, id_prefix="h13", same_second=1_500),
                UserPlaybookSeed("v-h13", "pending", 2_000, users=40, same_second=800),
            ],
        )
        stack.server.start()
        pages = list(reads.iter_profiles("archived", page_size=500))
        profiles = [row.profile_id for page in pages for row in page]
        assert max(len(page) for page in pages) <= 500
        assert len(profiles) == len(set(profiles))
        assert set(profiles) == seeded.profile_ids("archived")
        assert reads.get_profile_statistics().archived_count == len(profiles)
        playbooks = [
            row.user_playbook_id
            for page in reads.iter_user_playbooks(agent_version="v-h13", page_size=500)
            for row in page
        ]
        assert len(playbooks) == len(set(playbooks))
        assert set(playbooks) == seeded.user_playbook_ids("v-h13", "pending")
    finally:
        stack.restore(SEEDED)
