"""The approval step of the regeneration engine: when it asks, and what each answer does
(in-memory server, scripted answers). The real pause is in tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.approval import Approval, ApprovalDecision
from core.backup import open_backup
from core.outcome import Decision
from deployments import catalogue
from flows.params import RegenerationParams
from tests.unit.flows.fake_server import RERUN_STARTED_AT, profile
from tests.unit.flows.test_engine import engine, junk_rerun, playbooks_ops, profiles_ops

WARN = {"min_chars": 2000, "hygiene_fail_share": 1.0}
"""Every candidate row is 'too short' (warns), and no share of them fails."""
APPROVED = Approval(ApprovalDecision.APPROVED, "alice", "warnings expected after the prompt change")
REJECTED = Approval(ApprovalDecision.REJECTED, "bob", "rows got too short")


def approval_events(ops) -> list[dict]:
    return [p for e, p in ops.events if e == catalogue.EVENT_APPROVAL_DECIDED]


def test_warn_ask_approve_upgrades_and_records_who_and_why(tmp_path):
    ops = profiles_ops(answer=APPROVED)
    run = engine(ops, tmp_path, gate_policy=WARN, on_warn="ask", approval_timeout_s=600)

    outcome = run.run()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.ids("current") == {f"p-{u}-{n}" for u in range(8) for n in range(2)}
    ((request, timeout_s),) = ops.asked
    assert timeout_s == 600
    assert "## Upgrade profiles on" in request and "on_warn=ask" in request
    assert "hygiene_length" in request  # the gate report is in the form
    assert outcome.approval == APPROVED
    assert "- approval: Approved by alice: warnings expected" in run.summary.to_markdown()
    assert [e for e, _ in ops.events] == [
        catalogue.EVENT_GATE_PASSED,
        catalogue.EVENT_APPROVAL_DECIDED,
        catalogue.EVENT_UPGRADED,
    ]
    assert approval_events(ops) == [
        {
            "kind": "profiles",
            "agent_version": None,
            "verdict": "warn",
            "decision": "approved",
            "by": "alice",
            "reason": "warnings expected after the prompt change",
        }
    ]


def test_rows_users_write_while_the_run_waits_stay_current_and_are_saved(tmp_path):
    ops = profiles_ops(answer=APPROVED)
    late = profile("late-1", "user-1", "user-1 likes board games")
    late["last_modified_timestamp"] = RERUN_STARTED_AT + 60
    ops.during_approval = lambda: ops.rows.update({"late-1": late})

    outcome = engine(ops, tmp_path, gate_policy=WARN, on_warn="ask").run()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert "late-1" in ops.ids("current")
    assert outcome.touched.live_file is not None  # saved before the upgrade archived it
    saved = {r["profile_id"] for r in open_backup(Path(outcome.touched.live_file)).iter_rows()}
    assert saved == {"late-1"}


def test_warn_ask_reject_does_not_upgrade_and_deletes_the_profile_candidate(tmp_path):
    ops = profiles_ops(answer=REJECTED)
    before = {s: ops.ids(s) for s in ("current", "archived")}
    run = engine(ops, tmp_path, gate_policy=WARN, on_warn="ask")

    outcome = run.run()

    assert outcome.decision is Decision.NOT_APPROVED, outcome.message
    assert outcome.message.startswith("Not upgraded: Rejected by bob: rows got too short.")
    assert "Gate verdict WARN; CURRENT untouched." in outcome.message
    assert {s: ops.ids(s) for s in ("current", "archived")} == before
    assert ops.ids("pending") == set()
    assert "upgrade" not in ops.calls
    assert not outcome.succeeded
    assert "- approval: Rejected by bob: rows got too short." in run.summary.to_markdown()
    assert [p["decision"] for p in approval_events(ops)] == ["rejected"]


def test_warn_ask_reject_keeps_the_playbook_candidate_and_puts_current_back(tmp_path):
    ops = playbooks_ops(answer=REJECTED)
    before = {(r["user_id"], r["content"]) for r in ops.rows.values() if r["status"] is None}

    outcome = engine(ops, tmp_path, gate_policy=WARN, on_warn="ask").run()

    assert outcome.decision is Decision.NOT_APPROVED, outcome.message
    request, _ = ops.asked[0]
    assert "tombstoned are put back" in request
    assert ops.ids("pending") == {str(500 + u) for u in range(8)}  # merged rows point at them
    now = {(ops.rows[i]["user_id"], ops.rows[i]["content"]) for i in ops.ids("current")}
    assert now == before
    assert "upgrade" not in ops.calls and "aggregate" not in ops.calls


def test_no_answer_in_time_is_not_upgraded_and_says_so(tmp_path):
    ops = profiles_ops(answer=Approval.timed_out(5))
    before = ops.ids("current")

    outcome = engine(ops, tmp_path, gate_policy=WARN, on_warn="ask", approval_timeout_s=5).run()

    assert outcome.decision is Decision.NOT_APPROVED, outcome.message
    assert "Approval timed out: no answer within 5 s." in outcome.message
    assert ops.ids("current") == before and ops.ids("pending") == set()
    assert [p["decision"] for p in approval_events(ops)] == ["timed_out"]


def test_a_pass_never_asks_unless_approval_is_required(tmp_path):
    ops = profiles_ops()  # no scripted answer: asking fails the test
    outcome = engine(ops, tmp_path, on_warn="ask").run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert outcome.gate is not None and outcome.gate.verdict == "pass"
    assert "ask_approval" not in ops.calls and outcome.approval is None


def test_require_approval_asks_on_a_pass(tmp_path):
    ops = profiles_ops(answer=REJECTED)
    outcome = engine(ops, tmp_path, require_approval=True).run()
    assert ops.calls.count("ask_approval") == 1
    assert "require_approval on (gate verdict PASS)" in ops.asked[0][0]
    assert outcome.decision is Decision.NOT_APPROVED
    assert "upgrade" not in ops.calls


@pytest.mark.parametrize(
    ("params", "rerun", "decision"),
    [
        ({"gate_policy": WARN, "on_warn": "refuse"}, None, Decision.GATE_BLOCKED),
        ({"gate_policy": WARN}, None, Decision.UPGRADED),  # on_warn defaults to upgrade
        ({"gate_policy": WARN, "on_warn": "ask", "dry_run": True}, None, Decision.DRY_RUN),
        ({"require_approval": True}, junk_rerun, Decision.GATE_BLOCKED),
    ],
    ids=["warn-refuse", "warn-upgrade", "dry-run", "gate-fail"],
)
def test_no_question_when_the_answer_would_not_matter(tmp_path, params, rerun, decision):
    ops = profiles_ops(**({"rerun": rerun} if rerun else {}))
    outcome = engine(ops, tmp_path, **params).run()
    assert outcome.decision is decision, outcome.message
    assert "ask_approval" not in ops.calls


def test_allow_warn_is_refused_with_its_replacement():
    with pytest.raises(ValidationError, match="allow_warn was replaced by on_warn"):
        RegenerationParams(allow_warn=False)
    with pytest.raises(ValidationError, match="on_warn"):
        RegenerationParams(on_warn="maybe")
