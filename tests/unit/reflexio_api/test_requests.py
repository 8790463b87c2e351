"""Every method sends the path, verb, body and query the 0.2.32 server expects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from reflexio_api._requests import USER_PROFILES_TOP_K
from reflexio_api.paging import PAGE_SIZE

from .conftest import ok

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

STATUS = {
    "service_name": "profile_generation",
    "status": "completed",
    "started_at": 1,
    "request_params": {"operation_id": "op-1"},
}
AGG_OP = {
    "operation_id": "agg-1",
    "request_id": "r1",
    "agent_version": "v1",
    "status": "queued",
    "created_at": 1,
    "updated_at": 1,
}

# (call, answer body, verb, path, JSON body or None, query)
CASES: list[tuple[Any, dict[str, Any], str, str, Any, dict[str, str]]] = [
    (
        lambda c: c.rerun_profile_generation(user_id="u1", source="chat", start_time=T0),
        {"success": True, "operation_id": "op-1"},
        "POST",
        "/api/rerun_profile_generation",
        {"user_id": "u1", "source": "chat", "start_time": "2025-01-02T03:04:05+00:00"},
        {},
    ),
    (
        lambda c: c.rerun_profile_generation(),
        {"success": True, "operation_id": "op-1"},
        "POST",
        "/api/rerun_profile_generation",
        {},
        {},
    ),
    (
        lambda c: c.rerun_playbook_generation("v1", end_time=T0),
        {"success": True, "operation_id": "op-2"},
        "POST",
        "/api/rerun_playbook_generation",
        {"agent_version": "v1", "end_time": "2025-01-02T03:04:05+00:00"},
        {},
    ),
    (
        lambda c: c.manual_profile_generation(user_id="u1", source="chat"),
        {"success": True},
        "POST",
        "/api/manual_profile_generation",
        {"user_id": "u1", "source": "chat"},
        {},
    ),
    (
        lambda c: c.manual_playbook_generation("v1", source="chat"),
        {"success": True},
        "POST",
        "/api/manual_playbook_generation",
        {"agent_version": "v1", "source": "chat"},
        {},
    ),
    (
        lambda c: c.upgrade_profiles(only_affected_users=True),
        {"success": True},
        "POST",
        "/api/upgrade_all_profiles",
        {"only_affected_users": True},
        {},
    ),
    (
        lambda c: c.downgrade_profiles(only_affected_users=False),
        {"success": True},
        "POST",
        "/api/downgrade_all_profiles",
        {"only_affected_users": False},
        {},
    ),
    (
        lambda c: c.upgrade_user_playbooks("v1"),
        {"success": True},
        "POST",
        "/api/upgrade_all_user_playbooks",
        {"agent_version": "v1", "archive_current": True},
        {},
    ),
    (
        lambda c: c.downgrade_user_playbooks("v1"),
        {"success": True},
        "POST",
        "/api/downgrade_all_user_playbooks",
        {"agent_version": "v1"},
        {},
    ),
    (
        lambda c: c.run_playbook_aggregation("v1"),
        {"success": True, "message": "Skipped: not enough new playbooks (0 < 2)"},
        "POST",
        "/api/run_playbook_aggregation",
        {"agent_version": "v1"},
        {},
    ),
    (
        lambda c: c.start_playbook_aggregation_operation("r1", "v1"),
        AGG_OP,
        "POST",
        "/api/playbook_aggregation_operations",
        {"request_id": "r1", "agent_version": "v1"},
        {},
    ),
    (
        lambda c: c.get_playbook_aggregation_operation("agg/1"),
        AGG_OP,
        "GET",
        "/api/playbook_aggregation_operations/agg%2F1",
        None,
        {},
    ),
    (
        lambda c: c.clear_user_data("u1"),
        {"success": True, "deleted_counts": {"profiles": 2}},
        "POST",
        "/api/clear_user_data",
        {"user_id": "u1"},
        {},
    ),
    (lambda c: c.get_stall_state(), {"stalled": False}, "GET", "/stall_state", None, {}),
    (
        lambda c: c.mark_stall_notified(),
        {"notified_in_cc": False},
        "POST",
        "/stall_state/notified",
        None,
        {},
    ),
    (lambda c: c.cancel_operation(), {"success": True}, "POST", "/api/cancel_operation", {}, {}),
    (
        lambda c: c.cancel_operation("playbook_generation"),
        {"success": True},
        "POST",
        "/api/cancel_operation",
        {"service_name": "playbook_generation"},
        {},
    ),
    (
        lambda c: c.get_operation_status("playbook_generation"),
        {"success": True, "operation_status": STATUS},
        "GET",
        "/api/get_operation_status",
        None,
        {"service_name": "playbook_generation"},
    ),
    (
        lambda c: c.get_profile_statistics(),
        {"success": True, "current_count": 1, "pending_count": 0, "archived_count": 0},
        "GET",
        "/api/get_profile_statistics",
        None,
        {},
    ),
    (
        lambda c: c.list_profiles("pending", user_id="u1", source="chat"),
        {"success": True, "user_profiles": []},
        "GET",
        "/api/get_all_profiles",
        None,
        {"status_filter": "pending", "user_id": "u1", "source": "chat", "limit": str(PAGE_SIZE)},
    ),
    (
        lambda c: c.get_user_profiles("u1", ["current", "archived"]),
        {"success": True, "user_profiles": []},
        "POST",
        "/api/get_profiles",
        {"user_id": "u1", "status_filter": [None, "archived"], "top_k": USER_PROFILES_TOP_K},
        {},
    ),
    (
        lambda c: c.list_user_playbooks(status="current", agent_version="v1"),
        {"success": True, "user_playbooks": []},
        "POST",
        "/api/get_user_playbooks",
        {"status_filter": [None], "agent_version": "v1", "limit": PAGE_SIZE},
        {},
    ),
    (
        lambda c: c.list_user_playbooks(),
        {"success": True, "user_playbooks": []},
        "POST",
        "/api/get_user_playbooks",
        {"limit": PAGE_SIZE},
        {},
    ),
    (
        lambda c: c.list_agent_playbooks("v1", playbook_status="approved"),
        {"success": True, "agent_playbooks": []},
        "POST",
        "/api/get_agent_playbooks",
        {"agent_version": "v1", "playbook_status_filter": "approved", "limit": PAGE_SIZE},
        {},
    ),
    (
        lambda c: c.delete_profiles(["p1", "p2"]),
        {"success": True, "deleted_count": 2},
        "DELETE",
        "/api/delete_profiles_by_ids",
        {"profile_ids": ["p1", "p2"]},
        {},
    ),
    (
        lambda c: c.add_user_profiles(
            [{"profile_id": "p1", "user_id": "u", "content": "c", "status": None, "x": 1}]
        ),
        {"success": True, "added_count": 1},
        "POST",
        "/api/add_user_profile",
        {"user_profiles": [{"profile_id": "p1", "user_id": "u", "content": "c"}]},
        {},
    ),
    (
        lambda c: c.add_user_playbooks(
            [
                {
                    "user_playbook_id": 9,
                    "user_id": "u",
                    "agent_version": "v1",
                    "request_id": "r",
                    "content": "c",
                    "status": "merged",
                }
            ]
        ),
        {"success": True, "added_count": 1},
        "POST",
        "/api/add_user_playbook",
        {
            "user_playbooks": [
                {"user_id": "u", "agent_version": "v1", "request_id": "r", "content": "c"}
            ]
        },
        {},
    ),
    (
        lambda c: c.delete_user_playbooks([4, 5]),
        {"success": True, "deleted_count": 2},
        "DELETE",
        "/api/delete_user_playbooks_by_ids",
        {"user_playbook_ids": [4, 5]},
        {},
    ),
    (lambda c: c.get_config(), {"window_size": 10}, "GET", "/api/get_config", None, {}),
    (
        lambda c: c.set_config({"storage_config": {"type": "sqlite"}, "window_size": 5}),
        {"success": True},
        "POST",
        "/api/set_config",
        {"storage_config": {"type": "sqlite"}, "window_size": 5},
        {},
    ),
    (
        lambda c: c.update_config({"window_size": 5}),
        {"success": True, "msg": "Configuration unchanged"},
        "POST",
        "/api/update_config",
        {"window_size": 5},
        {},
    ),
    (lambda c: c.health(), {"status": "healthy"}, "GET", "/health", None, {}),
    (
        lambda c: c.publish_interaction(
            "u1", "s1", "chat", "v1", [{"role": "User", "content": "hi"}], wait_for_response=True
        ),
        {"success": True, "request_id": "r1"},
        "POST",
        "/api/publish_interaction",
        {
            "user_id": "u1",
            "session_id": "s1",
            "source": "chat",
            "agent_version": "v1",
            "interaction_data_list": [{"role": "User", "content": "hi"}],
        },
        {"wait_for_response": "true"},
    ),
]


@pytest.mark.parametrize(("call", "answer", "verb", "path", "body", "query"), CASES)
def test_request_shape(make_client, call, answer, verb, path, body, query) -> None:
    client, server = make_client(httpx.Response(200, json=answer))
    call(client)
    request = server.last
    assert request.method == verb
    assert request.url.raw_path.decode().split("?")[0] == path
    assert dict(request.url.params) == query
    assert server.last_json() == body


@pytest.mark.parametrize(("call", "answer", "verb", "path", "body", "query"), CASES)
def test_deprecated_and_ignored_fields_never_sent(
    make_client, call, answer, verb, path, body, query
) -> None:
    client, server = make_client(httpx.Response(200, json=answer))
    call(client)
    sent = server.last.content.decode()
    assert "extractor_names" not in sent
    assert "playbook_name" not in sent


def test_force_extraction_sent_only_when_given(make_client) -> None:
    client, server = make_client(ok())
    client.publish_interaction("u", "s", "chat", "v1", [{"role": "User", "content": "x"}])
    assert "force_extraction" not in server.last_json()
    assert "wait_for_response" not in server.last.url.params
    client.publish_interaction(
        "u", "s", "chat", "v1", [{"role": "User", "content": "x"}], force_extraction=True
    )
    assert server.last_json()["force_extraction"] is True


def test_synchronous_generation_gets_the_long_read_timeout(make_client) -> None:
    stats = ok(current_count=0, pending_count=0, archived_count=0)
    client, server = make_client(ok(), stats, read_timeout_s=3, generation_timeout_s=600)
    client.manual_profile_generation()
    assert server.last.extensions["timeout"]["read"] == 600
    client.get_profile_statistics()
    assert server.last.extensions["timeout"]["read"] == 3


def test_set_config_refuses_a_partial_config(make_client) -> None:
    client, server = make_client(ok())
    with pytest.raises(ValueError, match="storage_config"):
        client.set_config({"window_size": 5})
    assert server.requests == []


@pytest.mark.parametrize("ids", [[], "p1"])
def test_delete_refuses_empty_or_string_ids(make_client, ids) -> None:
    client, server = make_client(ok())
    with pytest.raises((ValueError, TypeError)):
        client.delete_profiles(ids)
    assert server.requests == []


def test_headers_user_agent_and_no_forwarding(make_client) -> None:
    client, server = make_client(ok(current_count=0, pending_count=0, archived_count=0))
    client.get_profile_statistics()
    headers = server.last.headers
    assert headers["user-agent"].startswith("reflexio-pipelines/")
    for word in ("curl", "wget", "bot", "crawler", "spider", "scraper"):
        assert word not in headers["user-agent"].lower()
    for name in ("forwarded", "x-forwarded-for", "x-real-ip", "authorization"):
        assert name not in headers
