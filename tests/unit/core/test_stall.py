"""Stall inference from the server's flag and from generation results (H2, H7)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.stall import classify_provider_error, infer_stall, stall_from_state
from reflexio_api.models import OperationStatus, StallState

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
