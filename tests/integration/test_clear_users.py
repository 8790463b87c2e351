"""Clear-user-data flow: everything of the users goes, H9's anonymised survivors included."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.erasures import erasure_name, read_erasures
from core.identity import server_key
from flows.clear_users import clear_users
from flows.params import ClearUsersParams
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings

pytestmark = pytest.mark.integration


def _client(stack: LocalStack) -> ReflexioClient:
    return ReflexioClient(ReflexioSettings(url=stack.url))


def _merge_playbooks(client: ReflexioClient) -> None:
    """A playbook rerun merges each user's CURRENT playbook into a new one (H6); the upgrade
    makes the survivor CURRENT, which clear_user_data then anonymises (H9)."""
    started = client.rerun_playbook_generation("v1")
    final = client.wait_for_operation("playbook_generation", started.operation_id, timeout_s=120)
    assert final.status == "completed", final
    client.upgrade_user_playbooks("v1")


def test_clear_removes_everything_and_reports_h9_leftovers(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
):
    with _client(seeded_stack) as client:
        _merge_playbooks(client)
        survivor_ids = {p.user_playbook_id for p in client.list_user_playbooks(user_id="alice")}
        assert survivor_ids
        others_before = len(client.list_profiles("current", user_id="bob"))

    state = clear_users(
        user_ids=["alice", " carol "],
        reflexio_url=seeded_stack.url,
        records_dir=tmp_path,
        return_state=True,
    )

    assert state.is_completed(), state.message
    rows = {r["user_id"]: r for r in state.result()["users"]}
    assert set(rows) == {"alice", "carol"}
    assert rows["alice"]["anonymised_leftovers (H9)"] >= 1
    assert all(r["remaining_after"] == 0 for r in rows.values())
    assert "H9" in state.message
    server = server_key(seeded_stack.url)
    erased = read_erasures(tmp_path, server)
    assert set(erased) == {"alice", "carol"}, "each erased user is recorded for restore"
    assert state.result()["erasures_recorded_in"] == str(tmp_path / erasure_name(server))
    with _client(seeded_stack) as client:
        for user in ("alice", "carol"):
            for status in ("current", "pending", "archived"):
                assert client.list_profiles(status, user_id=user) == []
            assert client.list_user_playbooks(user_id=user) == []
        live_ids = {p.user_playbook_id for p in client.list_user_playbooks()}
        assert not survivor_ids & live_ids, "the anonymised survivor was deleted by id"
        assert len(client.list_profiles("current", user_id="bob")) == others_before


@pytest.mark.parametrize("user_ids", [[], [""], ["alice", "  "]])
def test_bad_input_is_refused_before_any_server_call(user_ids: list[str]):
    with pytest.raises(ValidationError, match="user_ids"):
        ClearUsersParams(user_ids=user_ids, reflexio_url="http://127.0.0.1:9")


def test_bad_input_through_the_flow_fails_without_writes(
    seeded_stack: LocalStack, prefect_api: None
):
    with _client(seeded_stack) as client:
        before = client.get_profile_statistics()
    state = clear_users(
        **{"user_ids": ["alice", ""], "reflexio_url": seeded_stack.url}, return_state=True
    )
    assert state.is_failed()
    assert "user_ids" in state.message
    with _client(seeded_stack) as client:
        assert client.get_profile_statistics() == before


def test_an_erasure_that_cannot_be_recorded_erases_nobody(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with _client(seeded_stack) as client:
        before = client.get_profile_statistics()
        assert client.list_profiles("current", user_id="alice")

    state = clear_users(
        user_ids=["alice"],
        reflexio_url=seeded_stack.url,
        records_dir=blocker,
        return_state=True,
    )

    assert state.is_failed()
    assert "Cannot record the erasure" in state.message and "nobody was erased" in state.message
    with _client(seeded_stack) as client:
        assert client.get_profile_statistics() == before
