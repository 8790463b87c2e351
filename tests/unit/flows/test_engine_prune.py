"""The prune of old ARCHIVED rows ahead of the upgrade (core/prune.py), against the
in-memory server: exactly the backed-up old ARCHIVED ids, journaled first, undone with the
upgrade, repaired by id after a kill. The real-server case: tests/integration/
test_pipeline_prune.py."""

from __future__ import annotations

from pathlib import Path

from core.backup import open_backup
from core.outcome import Decision
from core.restore_plan import RunChanges, on_server, plan_restore
from core.touched import read_touched_ids
from tests.unit.flows.fake_server import FakeOps, Killed
from tests.unit.flows.test_engine import engine, playbooks_ops, profiles_ops
from tests.unit.flows.test_engine_journal import by_status, journaled, killed, resume


def deletes_between(ops: FakeOps, first: str, last: str) -> list[str]:
    calls = ops.calls
    return [c for c in calls[calls.index(first) : calls.index(last)] if c.startswith("delete:")]


def test_the_backed_up_old_archived_rows_are_pruned_journaled_before_the_upgrade(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("core.prune.PRUNE_BATCH", 2)
    ops = profiles_ops()
    old = ops.ids("archived")
    deleted: list[str] = []
    delete = ops.delete
    ops.delete = lambda ids: deleted.extend(ids) or delete(ids)  # type: ignore[method-assign]
    run, _ = journaled(ops, tmp_path, prune_archived_above=0)

    outcome = run.run()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert set(deleted) == old and len(deleted) == len(old)  # exactly those ids, once
    assert len(old) == 5
    assert deletes_between(ops, "journal:upgrade", "upgrade") == ["delete:2"] * 2 + ["delete:1"]
    touched = read_touched_ids(Path(outcome.touched.ids_file))
    assert old <= set(touched["deleted"])  # named before the first batch: restore needs it
    assert ops.ids("archived").isdisjoint(old)


def test_at_most_prune_archived_above_rows_are_left_to_the_upgrade(tmp_path):
    ops = profiles_ops()
    run = engine(ops, tmp_path, prune_archived_above=len(ops.ids("archived")))
    assert run.run().decision is Decision.UPGRADED
    assert deletes_between(ops, "gate", "upgrade") == []


def test_playbooks_are_pruned_by_the_same_step(tmp_path):
    ops = playbooks_ops()
    old = ops.ids("archived")
    assert old
    outcome = engine(ops, tmp_path, prune_archived_above=0).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert deletes_between(ops, "gate", "upgrade") == [f"delete:{len(old)}"]


def test_a_prune_that_fails_is_undone_with_the_upgrade(tmp_path):
    ops = profiles_ops()
    before = by_status(ops)
    delete = ops.delete

    def half_then_fail(ids):  # the prune's delete; the rollback's works
        ops.delete = delete  # type: ignore[method-assign]
        delete(sorted(ids)[: len(ids) // 2])
        raise RuntimeError("delete_profiles_by_ids: 504 Gateway Timeout")

    run = engine(ops, tmp_path, prune_archived_above=0)
    ops.delete = half_then_fail  # type: ignore[method-assign]
    outcome = run.run()

    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert "upgrade" not in ops.calls
    assert by_status(ops) == {**before, "pending": set()}


def test_a_run_killed_mid_prune_is_repaired_by_the_next_writer(tmp_path):
    ops = profiles_ops()
    before = by_status(ops)
    delete = ops.delete

    def half_then_die(ids):
        delete(sorted(ids)[: len(ids) // 2])
        raise Killed

    ops.delete = half_then_die  # type: ignore[method-assign]
    journal = killed(ops, tmp_path, prune_archived_above=0)
    assert journal.entry.step == "upgrade" and journal.entry.touched
    ops.delete = delete  # type: ignore[method-assign]
    pruned = before["archived"] - ops.ids("archived")
    assert pruned

    repair, done = resume(ops, tmp_path, journal)

    assert "data equals the state before the upgrade" in done, done
    assert f"recreate:{len(pruned)}" in ops.calls  # established from the server, by id
    assert by_status(ops) == {**before, "pending": set()}
    assert not repair.left_unfinished


def test_a_restore_after_a_pruned_upgrade_re_creates_the_pruned_rows(tmp_path):
    ops = profiles_ops()
    old = ops.ids("archived")
    outcome = engine(ops, tmp_path, prune_archived_above=0).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    touched = read_touched_ids(Path(outcome.touched.ids_file))

    plan = plan_restore(
        open_backup(Path(outcome.backup)).iter_rows(),
        on_server(r for r in ops.rows.values()),
        RunChanges.parse(touched, "touched"),
        erased=(),
    )

    assert old <= plan.recreate  # pruned ahead of the upgrade: put back from the backup
    assert plan.gone == set()
