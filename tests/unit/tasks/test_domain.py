"""Pure pipeline decisions: stall inference, expected counts, verification, backups."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from reflexio_api.models import OperationStatus, StallState
from tasks.domain import (
    Counts,
    VerificationFailed,
    backup_document,
    backup_path,
    check_verification,
    classify_provider_error,
    expected_after_upgrade,
    infer_stall,
    read_backup,
    resource_id,
    server_slug,
    stall_from_state,
    users_without_current,
    verify_upgrade,
    write_backup,
)

AUTH = (
    "Extractor failed for alice: Playbook extraction failed without structured output: "
    "error (LiteLLMClientError/non_transient) (type=RuntimeError)"
)
BILLING = "Extractor failed: error (LiteLLMClientError/transient) (type=RuntimeError)"


def status(**kw) -> OperationStatus:
    base = {
        "service_name": "playbook_generation",
        "status": "failed",
        "started_at": 1,
        "total_users": 2,
        "processed_users": 2,
        "failed_users": 2,
    }
    return OperationStatus.model_validate({**base, **kw})


def test_server_identity():
    assert resource_id("http://127.0.0.1:8081") == "reflexio.server.127.0.0.1:8081"
    assert resource_id("https://rx.example.com") == "reflexio.server.rx.example.com:443"
    assert server_slug("http://127.0.0.1:8081") == "127-0-0-1-8081"


def test_classify_provider_error():
    assert classify_provider_error(AUTH) == "auth_error"
    assert classify_provider_error(BILLING) == "billing_error"
    assert classify_provider_error("No interactions found") is None
    assert classify_provider_error(None) is None


def test_every_user_auth_error_is_an_auth_stall():
    failed = [{"user_id": "alice", "error": AUTH}, {"user_id": "bob", "error": AUTH}]
    stall = infer_stall(status(failed_user_ids=failed), "playbook_generation")
    assert stall is not None and stall.reason == "auth_error" and stall.inferred
    assert stall.message.startswith("Learning is stalled: auth_error")


def test_every_user_transient_error_is_a_billing_stall():
    failed = [{"user_id": "alice", "error": BILLING}, {"user_id": "bob", "error": BILLING}]
    stall = infer_stall(status(failed_user_ids=failed), "playbook_generation")
    assert stall is not None and stall.reason == "billing_error"


def test_mixed_or_partial_failures_are_not_a_stall():
    mixed = [{"user_id": "alice", "error": AUTH}, {"user_id": "bob", "error": BILLING}]
    assert infer_stall(status(failed_user_ids=mixed), "playbook_generation") is None
    partial = [{"user_id": "alice", "error": AUTH}]
    assert infer_stall(status(failed_user_ids=partial, failed_users=1), "x") is None
    other = [{"user_id": "a", "error": "boom"}, {"user_id": "b", "error": "boom"}]
    assert infer_stall(status(failed_user_ids=other), "playbook_generation") is None


def test_profile_rerun_that_generates_nothing_is_a_stall():
    silent = status(
        service_name="profile_generation",
        status="completed",
        failed_users=0,
        total_users=6,
        stats={"total_generated": 0, "total_interactions_processed": 6},
    )
    stall = infer_stall(silent, "profile_generation")
    assert stall is not None and stall.reason == "no_output"
    healthy = silent.model_copy(update={"stats": {"total_generated": 24}})
    assert infer_stall(healthy, "profile_generation") is None
    nobody = silent.model_copy(update={"total_users": 0})
    assert infer_stall(nobody, "profile_generation") is None


def test_stall_from_state():
    assert stall_from_state(StallState(stalled=False)) is None
    stall = stall_from_state(
        StallState(
            stalled=True,
            reason="billing_error",
            stalled_at=datetime(2026, 1, 1, tzinfo=UTC),
            notified_in_cc=True,
        )
    )
    assert stall is not None and stall.reason == "billing_error" and stall.notified_before
    assert not stall.inferred and "server stall flag" in stall.message


def rows(*users: str) -> list[dict]:
    return [{"user_id": u} for u in users]


def test_expected_after_upgrade_only_affected_users():
    current = rows("a", "a", "b", "c")
    pending = rows("a", "b")
    assert expected_after_upgrade(current, pending, True) == Counts(3, 0, 3)
    assert expected_after_upgrade(current, pending, False) == Counts(2, 0, 4)


def test_verify_upgrade_names_every_mismatch():
    ok = verify_upgrade(Counts(3, 0, 3), Counts(3, 0, 3), 2, 2)
    assert ok.ok
    check_verification(ok)
    bad = verify_upgrade(Counts(3, 0, 3), Counts(2, 1, 3), 2, 1)
    assert not bad.ok and len(bad.problems) == 3
    with pytest.raises(VerificationFailed, match="current: expected 3, found 2"):
        check_verification(bad)
    unknown = verify_upgrade(Counts(3, 0, 3), Counts(3, 0, 3), 2, None)
    assert unknown.ok


def test_users_without_current_after_tombstoning():
    live = [{"user_id": "a", "status": None}, {"user_id": "b", "status": "pending"}]
    assert users_without_current(live, ["a", "b", "c"]) == ["b", "c"]


def test_backup_roundtrip(tmp_path: Path):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    data = [{"profile_id": "p1", "user_id": "a", "status": None}]
    doc = backup_document("profiles", "http://127.0.0.1:8081", data, flow_run_id="r", now=now)
    path = backup_path(tmp_path, "profiles", "http://127.0.0.1:8081", "abcdef123456", now)
    assert path.name == "profiles-127-0-0-1-8081-20260102T030405Z-abcdef12.json"
    write_backup(path, doc)
    loaded = read_backup(path)
    assert loaded["rows"] == data and loaded["counts"] == {"current": 1}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a"):
        read_backup(tmp_path / "bad.json")


def test_playbooks_to_recreate_are_the_tombstoned_current_rows() -> None:
    from tasks.domain import playbooks_to_recreate

    before = [
        {"user_id": "a", "content": "kept", "status": None},
        {"user_id": "b", "content": "merged away", "status": None},
        {"user_id": "c", "content": "was archived", "status": "archived"},
    ]
    live = [
        {"user_id": "a", "content": "kept", "status": None},
        {"user_id": "b", "content": "new candidate", "status": "pending"},
    ]
    assert playbooks_to_recreate(before, live) == [before[1]]
