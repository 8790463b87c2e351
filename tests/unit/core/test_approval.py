"""The approval answer and the text the approval form shows."""

from __future__ import annotations

import pytest

from core.approval import Approval, ApprovalDecision, approval_request, duration
from core.kinds import PROFILES, user_playbooks


@pytest.mark.parametrize(("seconds", "words"), [(45, "45 s"), (300, "5 min"), (28800, "8 h")])
def test_duration(seconds: int, words: str) -> None:
    assert duration(seconds) == words


def test_sentences_say_the_decision_who_and_why() -> None:
    assert Approval(ApprovalDecision.APPROVED, "alice", "").sentence() == (
        "Approved by alice: no reason given."
    )
    rejected = Approval(ApprovalDecision.REJECTED, "bob", "too short")
    assert rejected.sentence() == "Rejected by bob: too short."
    assert not rejected.approved
    timed_out = Approval.timed_out(3600)
    assert timed_out.sentence() == "Approval timed out: no answer within 1 h."
    assert not timed_out.approved


def test_the_request_says_what_each_answer_does_then_shows_the_report() -> None:
    request = approval_request(PROFILES, "http://127.0.0.1:8081", "gate WARN.", "REPORT", 300)
    assert request.startswith("## Upgrade profiles on `http://127.0.0.1:8081`?")
    assert "**Why you are asked:** gate WARN." in request
    assert "the candidate's PENDING rows are deleted" in request
    assert "No answer within 5 min" in request
    assert request.endswith("---\n\nREPORT")
    playbooks = approval_request(user_playbooks("v1"), "http://h:1", "why", "REPORT", 60)
    assert "PENDING rows are kept" in playbooks and "put back (H6)" in playbooks
