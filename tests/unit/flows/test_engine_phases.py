"""The engine's phases are public and compose by hand as `run` composes them: each hands
the next what it needs, and nothing is written to CURRENT before promote."""

from __future__ import annotations

import pandas as pd

from core.outcome import Decision
from core.regeneration import Judged, Promoted
from tests.unit.flows.test_engine import engine, profiles_ops


def test_prepare_candidate_gate_promote_verify_by_hand_upgrade_as_run_does(tmp_path):
    ops = profiles_ops()
    current_before = ops.ids("current")
    phases = engine(ops, tmp_path)

    baseline = phases.prepare()
    assert isinstance(baseline, pd.DataFrame) and len(baseline) == len(current_before)
    assert ops.writes() == [] and phases.backup is not None

    assert phases.candidate() is None
    candidate = ops.ids("pending")
    assert len(candidate) == 16

    judged = phases.gate(baseline)
    assert isinstance(judged, Judged) and set(judged.state.pending) == candidate
    assert "upgrade" not in ops.writes() and ops.ids("current") == current_before

    promoted = phases.promote(judged)
    assert isinstance(promoted, Promoted) and promoted.expected.promoted == candidate

    outcome = phases.verify(promoted)
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.ids("current") == candidate and ops.ids("archived") >= current_before
