"""How the prompt check composes the engine's phases to promote every kind or none: up to
the gate, then its own step keeps the candidate PENDING; later the engine's promote and
verify phases upgrade it, or its undo rolls that upgrade back."""

from __future__ import annotations

from pathlib import Path

from core.backup import open_backup
from core.outcome import Decision
from flows.prompt_change import KindRun
from tests.unit.flows.fake_server import FakeOps, profile
from tests.unit.flows.test_engine import engine, junk_rerun, profiles_ops

STATUSES = ("current", "archived")


def gated(ops: FakeOps, tmp_path: Path) -> KindRun:
    return KindRun("profiles", engine(ops, tmp_path))


def test_a_passing_candidate_is_kept_pending_and_nothing_is_written_after_the_gate(tmp_path):
    ops = profiles_ops()
    before = {s: ops.ids(s) for s in STATUSES}
    run = gated(ops, tmp_path)

    outcome = run.gate()

    assert outcome.decision is Decision.CANDIDATE_KEPT and outcome.succeeded, outcome.message
    assert {s: ops.ids(s) for s in STATUSES} == before
    assert run.kept is not None and set(run.kept.state.pending) == ops.ids("pending")
    assert len(ops.ids("pending")) == 16
    assert "upgrade" not in ops.writes()


def test_a_kept_candidate_is_upgraded_later_counting_rows_written_since(tmp_path):
    ops = profiles_ops()
    run = gated(ops, tmp_path)
    run.gate()
    ops.rows["live-1"] = profile("live-1", "user-2", "user-2 likes late jazz")  # since the gate
    ops.rows["live-1"]["last_modified_timestamp"] = 1_900_000_000

    outcome = run.promote()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.ids("pending") == set()
    assert "live-1" in ops.ids("current")
    # read again before the upgrade: saved as a live row before the upgrade archived it
    assert outcome.touched is not None and outcome.touched.live_file is not None
    assert set(open_backup(Path(outcome.touched.live_file)).ids()) == {"live-1"}


def test_a_blocked_gate_is_not_kept(tmp_path):
    ops = profiles_ops(rerun=junk_rerun)
    run = gated(ops, tmp_path)
    outcome = run.gate()
    assert outcome.decision is Decision.GATE_BLOCKED
    assert run.kept is None and ops.ids("pending") == set()


def test_an_upgrade_made_from_a_kept_candidate_can_be_rolled_back(tmp_path):
    ops = profiles_ops()
    before = {s: ops.ids(s) for s in STATUSES}
    run = gated(ops, tmp_path)
    run.gate()
    assert run.promote().decision is Decision.UPGRADED

    outcome = run.undo("playbooks v1 could not be upgraded")

    assert outcome.decision is Decision.ROLLED_BACK
    assert "Upgrade rolled back after: playbooks v1 could not be upgraded" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert {s: ops.ids(s) for s in STATUSES} == before and ops.ids("pending") == set()
