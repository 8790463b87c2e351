"""Contract of the generation, promotion and aggregation calls against the real server,
and the hazards (docs/hazards.md) as the client truthfully reports them.

Each test starts from the seeded snapshot (``seeded_client``, ~5 s); the module puts the
seeded data back when it ends, so later files see the stack as seeded.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator

import pytest

from local_stack.stack import LocalStack
from reflexio_api import (
    OperationInProgress,
    ReflexioClient,
    ServerReportedFailure,
)
from reflexio_api.models import AggregationOperation, OperationStarted
from tests.conftest import SEEDED
from tests.integration.conftest import (
    OPERATION_TIMEOUT_S,
    current_profiles_per_user,
    run_to_end,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def _seeded_data_after_module(stack: LocalStack) -> Iterator[None]:
    """Leave the shared stack as seeded (and the stand-in normal) for the files after us."""
    yield
    stack.restore(SEEDED)


def test_one_user_profile_rerun_is_followed_by_id_and_its_upgrade_archives_everyone_h1(
    seeded_client: ReflexioClient,
) -> None:
    """A rerun for alice, waited for by id; H1: the upgrade archives every user's CURRENT
    profiles, not only alice's; downgrade_profiles puts them back."""
    before = current_profiles_per_user(seeded_client)
    started = seeded_client.rerun_profile_generation(user_id="alice")
    assert isinstance(started, OperationStarted)
    assert started.msg == "Profile generation started"

    final, seen = run_to_end(seeded_client, "profile_generation", started.operation_id)

    assert final.status == "completed"
    assert final.operation_id == started.operation_id
    assert (final.total_users, final.processed_users, final.failed_users) == (1, 1, 0)
    assert final.request_params["user_id"] == "alice"
    assert final.completed_at is not None and final.completed_at >= final.started_at
    assert final.progress_percentage == 100.0
    assert seen, "the progress callback was called"
    assert {status.operation_id for status in seen} == {started.operation_id}
    assert seen[-1] == final
    assert seeded_client.get_operation_status("profile_generation") == final
    pending = seeded_client.list_profiles("pending")
    assert pending and {profile.user_id for profile in pending} == {"alice"}
    assert all(profile.status == "pending" for profile in pending)
    assert seeded_client.get_profile_statistics().pending_count == len(pending)
    assert seeded_client.get_user_profiles("alice", statuses=("pending",)) == pending

    upgraded = seeded_client.upgrade_profiles(only_affected_users=False)

    assert upgraded.profiles_archived == sum(before.values()), "every user's CURRENT archived"
    assert upgraded.profiles_promoted == len(pending)
    after = current_profiles_per_user(seeded_client)
    assert set(after) == {"alice"}, "bob..frank were left with no CURRENT profile"
    assert after["alice"] == len(pending)
    stats = seeded_client.get_profile_statistics()
    assert (stats.current_count, stats.pending_count) == (len(pending), 0)
    assert stats.archived_count == sum(before.values())

    downgraded = seeded_client.downgrade_profiles(only_affected_users=False)

    assert downgraded.profiles_restored == sum(before.values())
    assert downgraded.profiles_demoted == len(pending)
    assert current_profiles_per_user(seeded_client) == before


def test_h5_two_profile_reruns_leave_two_generations_pending(
    seeded_client: ReflexioClient, stack: LocalStack
) -> None:
    first = seeded_client.rerun_profile_generation(user_id="bob")
    assert run_to_end(seeded_client, "profile_generation", first.operation_id)[0].status == (
        "completed"
    )
    after_first = seeded_client.get_profile_statistics().pending_count
    # A changed prompt words things differently: the second rerun's facts are not among the
    # first rerun's PENDING rows that its prompt lists as already stored.
    stack.llm.configure(style="reworded")
    second = seeded_client.rerun_profile_generation(user_id="bob")
    final, _ = run_to_end(seeded_client, "profile_generation", second.operation_id)
    assert final.status == "completed"
    assert second.operation_id != first.operation_id

    assert after_first > 0
    assert seeded_client.get_profile_statistics().pending_count == 2 * after_first
    generations: defaultdict[str, set[str]] = defaultdict(set)
    for profile in seeded_client.list_profiles("pending"):
        generations[profile.user_id].add(profile.generated_from_request_id)
    assert dict(generations).keys() == {"bob"}
    assert len(generations["bob"]) == 2, "each rerun's rows carry their own request id"
    assert final.stats["total_generated"] == 2 * after_first, "stats count pending, not new"


def test_h3_manual_profile_generation_reports_existing_rows_not_new_ones(
    seeded_client: ReflexioClient, stack: LocalStack
) -> None:
    before = seeded_client.get_profile_statistics().current_count
    stack.llm.configure(style="reworded")  # new wording: rows the stored ones don't cover

    result = seeded_client.manual_profile_generation(user_id="alice")

    new_rows = seeded_client.get_profile_statistics().current_count - before
    alice_now = len(seeded_client.list_profiles("current", user_id="alice"))
    assert new_rows > 0
    assert result.profiles_generated == alice_now, "it counts alice's CURRENT rows after"
    assert result.profiles_generated != new_rows


def test_playbook_rerun_upgrade_then_downgrade_finds_nothing_archived(
    seeded_client: ReflexioClient,
) -> None:
    """H6: a playbook rerun tombstones CURRENT rows (merged), so the upgrade archives none
    and the downgrade has nothing to restore: the client says so instead of succeeding."""
    current_before = seeded_client.list_user_playbooks(status="current", agent_version="v1")
    started = seeded_client.rerun_playbook_generation("v1")
    final, seen = run_to_end(seeded_client, "playbook_generation", started.operation_id)

    assert final.status == "completed"
    assert final.operation_id == started.operation_id
    assert final.failed_user_ids == []
    assert seen and seen[-1] == final
    pending = seeded_client.list_user_playbooks(status="pending", agent_version="v1")
    assert pending and all(playbook.status == "pending" for playbook in pending)
    assert seeded_client.list_user_playbooks(status="current", agent_version="v1") == [], (
        "H6: the old CURRENT rows were merged into the PENDING ones"
    )

    upgraded = seeded_client.upgrade_user_playbooks("v1", archive_current=True)

    assert upgraded.user_playbooks_promoted == len(pending)
    assert upgraded.user_playbooks_archived == 0
    current_after = seeded_client.list_user_playbooks(status="current", agent_version="v1")
    assert {p.user_playbook_id for p in current_after} == {p.user_playbook_id for p in pending}
    assert len(current_after) == len(current_before)
    with pytest.raises(ServerReportedFailure, match="No archived items found to restore"):
        seeded_client.downgrade_user_playbooks("v1")


def test_manual_playbook_generation_reports_existing_rows(
    seeded_client: ReflexioClient,
) -> None:
    result = seeded_client.manual_playbook_generation("v1")
    rows = seeded_client.list_user_playbooks(status="current", agent_version="v1")
    assert result.playbooks_generated == len(rows), "H3: a count of rows, not of new ones"
    assert {playbook.agent_version for playbook in rows} == {"v1"}


def test_aggregation_sync_and_as_a_durable_operation(seeded_client: ReflexioClient) -> None:
    before = {p.agent_playbook_id for p in seeded_client.list_agent_playbooks(agent_version="v1")}
    message = seeded_client.run_playbook_aggregation("v1").message
    assert message.startswith("Processed") and "generated 1 agent playbooks" in message
    after = {p.agent_playbook_id for p in seeded_client.list_agent_playbooks(agent_version="v1")}
    assert len(after - before) == 1, "the generated agent playbook is listed"

    request_id = f"contract-{uuid.uuid4().hex}"
    submitted = seeded_client.start_playbook_aggregation_operation(request_id, "v1")
    assert isinstance(submitted, AggregationOperation)
    assert (submitted.request_id, submitted.agent_version) == (request_id, "v1")
    assert submitted.status in {"queued", "running", "succeeded"}
    operation = _wait_for_aggregation(seeded_client, submitted.operation_id)

    assert operation.status == "succeeded"
    assert operation.result is not None
    assert operation.result.user_playbooks_processed > 0
    assert operation.completed_at is not None and operation.attempts >= 1
    again = seeded_client.start_playbook_aggregation_operation(request_id, "v1")
    assert again.operation_id == submitted.operation_id, "idempotent per request_id"
    assert again.status == "succeeded"


def _wait_for_aggregation(client: ReflexioClient, operation_id: str) -> AggregationOperation:
    """Poll one durable aggregation until it succeeds or fails (or the deadline passes)."""
    deadline = time.monotonic() + OPERATION_TIMEOUT_S
    while True:
        operation = client.get_playbook_aggregation_operation(operation_id)
        assert operation.operation_id == operation_id
        if operation.status in {"succeeded", "failed"} or time.monotonic() > deadline:
            return operation
        time.sleep(0.3)


def test_cancel_stops_a_running_rerun_and_overlapping_calls_are_refused(
    stack: LocalStack, client: ReflexioClient
) -> None:
    """Any data state will do (the module restores at its end): six users have interactions."""
    stack.llm.configure(delay_s=0.5)
    try:
        started = client.rerun_profile_generation()
        with pytest.raises(OperationInProgress):
            client.rerun_profile_generation()
        with pytest.raises(ServerReportedFailure, match="already in progress"):
            client.manual_profile_generation(user_id="alice")

        cancelled = client.cancel_operation("profile_generation")

        assert cancelled.cancelled_services == ["profile_generation"]
        final, _ = run_to_end(client, "profile_generation", started.operation_id)
        assert final.status == "cancelled"
        assert final.processed_users < final.total_users == 6
    finally:
        stack.llm.reset()


def test_playbook_rerun_with_a_rejected_llm_key_ends_failed_per_user(
    stack: LocalStack, client: ReflexioClient
) -> None:
    """Any data state will do (the module restores at its end): six users have interactions."""
    stack.llm.configure(mode="auth_error")
    try:
        started = client.rerun_playbook_generation("v1")
        final, _ = run_to_end(client, "playbook_generation", started.operation_id)
    finally:
        stack.llm.reset()

    assert final.status == "failed"
    assert final.failed_users == len(final.failed_user_ids) > 0
    for failed in final.failed_user_ids:
        assert failed.user_id
        assert "(LiteLLMClientError/non_transient)" in (failed.error or "")
