"""Answers are parsed into models; `success` and edge answers are read, not trusted."""

from __future__ import annotations

import httpx

from reflexio_api.models import OperationStatus

from .conftest import ok

PROFILE = {
    "profile_id": "p1",
    "user_id": "u1",
    "content": "likes tea",
    "last_modified_timestamp": 10,
    "generated_from_request_id": "r1",
    "profile_time_to_live": "infinity",
    "custom_features": {"a": 1},
}


def test_rerun_returns_operation_id(make_client) -> None:
    client, _ = make_client(ok(msg="Profile generation started", operation_id="op-9"))
    started = client.rerun_profile_generation()
    assert (started.operation_id, started.msg) == ("op-9", "Profile generation started")


def test_upgrade_counts(make_client) -> None:
    answer = ok(profiles_archived=2, profiles_promoted=3, profiles_deleted=1, message="done")
    client, _ = make_client(answer)
    result = client.upgrade_profiles(only_affected_users=True)
    assert (result.profiles_archived, result.profiles_promoted, result.profiles_deleted) == (
        2,
        3,
        1,
    )


def test_profiles_keep_unknown_fields_for_backups(make_client) -> None:
    client, _ = make_client(ok(user_profiles=[PROFILE]), ok(user_profiles=[]))
    [profile] = client.list_profiles("current")
    assert profile.status is None  # CURRENT is omitted by the server
    assert profile.model_dump()["custom_features"] == {"a": 1}
    assert profile.model_dump()["profile_time_to_live"] == "infinity"


def test_user_playbook_may_be_anonymised(make_client) -> None:
    row = {
        "user_playbook_id": 3,
        "agent_version": "v1",
        "request_id": "r",
        "status": "merged",
        "created_at": 1,
    }
    client, _ = make_client(ok(user_playbooks=[row]), ok(user_playbooks=[]))
    [playbook] = client.list_user_playbooks()
    assert playbook.user_id is None
    assert playbook.status == "merged"


def test_operation_status_none_when_no_operation(make_client) -> None:
    answer = httpx.Response(
        200, json={"success": False, "msg": "No operation found for service: profile_generation"}
    )
    client, _ = make_client(answer)
    assert client.get_operation_status("profile_generation") is None


def test_operation_status_parsed_with_failed_users(make_client) -> None:
    status = {
        "service_name": "playbook_generation",
        "status": "failed",
        "started_at": 1,
        "completed_at": 5,
        "total_users": 2,
        "processed_users": 2,
        "failed_users": 1,
        "failed_user_ids": [{"user_id": "u2", "error": "LLM 401"}],
        "request_params": {"agent_version": "v1", "operation_id": "op-3"},
        "progress_percentage": 100.0,
    }
    client, _ = make_client(ok(operation_status=status))
    parsed = client.get_operation_status("playbook_generation")
    assert isinstance(parsed, OperationStatus)
    assert parsed.operation_id == "op-3"
    assert parsed.is_terminal
    assert parsed.failed_user_ids[0].error == "LLM 401"


def test_stall_state_and_notified(make_client) -> None:
    client, _ = make_client(
        httpx.Response(
            200,
            json={
                "stalled": True,
                "reason": "billing_error",
                "stalled_at": "2025-01-01T00:00:00Z",
                "notified_in_cc": False,
                "error_message": "insufficient_quota",
            },
        ),
        httpx.Response(200, json={"notified_in_cc": True}),
    )
    state = client.get_stall_state()
    assert state.stalled and state.reason == "billing_error" and state.stalled_at.year == 2025
    assert client.mark_stall_notified().notified_in_cc is True


def test_clear_user_data_counts(make_client) -> None:
    client, _ = make_client(ok(deleted_counts={"interactions": 4, "profiles": 2}))
    assert client.clear_user_data("u1").deleted_counts == {"interactions": 4, "profiles": 2}


def test_unhealthy_is_an_answer_not_an_error(make_client) -> None:
    client, _ = make_client(httpx.Response(503, json={"status": "unhealthy", "checks": {}}))
    assert client.health().status == "unhealthy"


def test_aggregation_operation_result(make_client) -> None:
    operation = {
        "operation_id": "a1",
        "request_id": "r1",
        "agent_version": "v1",
        "status": "succeeded",
        "created_at": 1,
        "updated_at": 2,
        "result": {"clusters_found": 2, "user_playbooks_processed": 5, "playbooks_generated": 2},
    }
    client, _ = make_client(httpx.Response(202, json=operation))
    result = client.start_playbook_aggregation_operation("r1", "v1")
    assert result.status == "succeeded" and result.result.clusters_found == 2


def test_get_config_returns_the_dict(make_client) -> None:
    config = {"window_size": 10, "storage_config": {"type": "sqlite"}}
    client, _ = make_client(httpx.Response(200, json=config))
    assert client.get_config() == config


def test_row_dict_is_the_row_as_sent() -> None:
    from reflexio_api.models import Profile, row_dict

    sent = {
        "profile_id": "p1",
        "user_id": "u",
        "content": "likes tea",
        "last_modified_timestamp": 5,
        "generated_from_request_id": "r",
        "extractor_names": ["x"],
    }
    profile = Profile.model_validate(sent)
    assert row_dict(profile) == profile.model_dump()
    assert row_dict(profile)["extractor_names"] == ["x"]
