"""The engine's gate-only hook the prompt check uses to promote every kind or none: keep a
candidate PENDING after its gate, upgrade it later, or roll that upgrade back."""

from __future__ import annotations

from core.outcome import Decision
from tests.unit.flows.fake_server import profile
from tests.unit.flows.test_engine import engine, junk_rerun, profiles_ops

STATUSES = ("current", "archived")


def test_a_passing_candidate_is_kept_pending_and_nothing_is_written_after_the_gate(tmp_path):
    ops = profiles_ops()
    before = {s: ops.ids(s) for s in STATUSES}
    gated = engine(ops, tmp_path)
    gated.keep_candidate = True

    outcome = gated.run()

    assert outcome.decision is Decision.CANDIDATE_KEPT and outcome.succeeded, outcome.message
    assert {s: ops.ids(s) for s in STATUSES} == before
    assert len(ops.ids("pending")) == 16 and gated.kept is not None
    assert "upgrade" not in ops.writes()


def test_a_kept_candidate_is_upgraded_later_counting_rows_written_since(tmp_path):
    ops = profiles_ops()
    gated = engine(ops, tmp_path)
    gated.keep_candidate = True
    gated.run()
    ops.rows["live-1"] = profile("live-1", "user-2", "user-2 likes late jazz")  # since the gate
    ops.rows["live-1"]["last_modified_timestamp"] = 1_900_000_000

    outcome = gated.upgrade_kept()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.ids("pending") == set()
    assert "live-1" in ops.ids("current")


def test_a_blocked_gate_is_not_kept(tmp_path):
    ops = profiles_ops(rerun=junk_rerun)
    gated = engine(ops, tmp_path)
    gated.keep_candidate = True
    outcome = gated.run()
    assert outcome.decision is Decision.GATE_BLOCKED
    assert gated.kept is None and ops.ids("pending") == set()


def test_an_upgrade_made_from_a_kept_candidate_can_be_rolled_back(tmp_path):
    ops = profiles_ops()
    before = {s: ops.ids(s) for s in STATUSES}
    gated = engine(ops, tmp_path)
    gated.keep_candidate = True
    gated.run()
    assert gated.upgrade_kept().decision is Decision.UPGRADED

    outcome = gated.undo_upgrade("playbooks v1 could not be upgraded")

    assert outcome.decision is Decision.ROLLED_BACK
    assert "Upgrade rolled back after: playbooks v1 could not be upgraded" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert {s: ops.ids(s) for s in STATUSES} == before and ops.ids("pending") == set()
