"""The run journal: written before the first write and before the upgrade, removed once
the server is consistent, kept when the run dies; `Engine.resume` then finishes or undoes
the dead run from it (the in-memory server stands in for the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.outcome import Decision
from core.regeneration import Engine
from tests.unit.flows.fake_server import FakeJournal, FakeOps, Killed
from tests.unit.flows.test_engine import engine, playbooks_ops, profiles_ops


def journaled(ops: FakeOps, tmp_path: Path, **params) -> tuple[Engine, FakeJournal]:
    run = engine(ops, tmp_path, **params)
    run.journal = FakeJournal(ops)
    return run, run.journal


def killed(ops: FakeOps, tmp_path: Path, **params) -> FakeJournal:
    """Run until the fault kills it; the journal it leaves."""
    run, journal = journaled(ops, tmp_path, **params)
    with pytest.raises(Killed):
        run.run()
    assert journal.entry is not None, "a run killed after its first write leaves its journal"
    return journal


def resume(ops: FakeOps, tmp_path: Path, journal: FakeJournal) -> tuple[Engine, str]:
    """The next writer's repair: a new engine standing in for the dead run."""
    assert journal.entry is not None
    ops.calls.clear()
    repair = engine(ops, tmp_path / "repair")
    return repair, repair.resume(journal.entry)


def kill(*_: object) -> None:
    raise Killed


def by_status(ops: FakeOps) -> dict[str, set[str]]:
    return {s: ops.ids(s) for s in ("current", "pending", "archived")}


def test_the_journal_is_written_before_each_destructive_step_and_removed_at_the_end(tmp_path):
    ops = profiles_ops()
    run, journal = journaled(ops, tmp_path)
    outcome = run.run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    calls = ops.calls
    assert calls.index("journal:candidate") < calls.index("rerun:None")
    assert calls.index("rerun:None") < calls.index("journal:upgrade") < calls.index("upgrade")
    assert calls.index("upgrade") < calls.index("journal:clear")
    assert journal.entry is None


def test_a_refusal_before_any_write_writes_no_journal(tmp_path):
    ops = profiles_ops()
    ops.rows["old-p"] = {**ops.rows["c-0-0"], "profile_id": "old-p", "status": "pending"}
    run, _ = journaled(ops, tmp_path)
    with pytest.raises(RuntimeError, match="already PENDING"):
        run.run()
    assert not any(c.startswith("journal") for c in ops.calls)


def test_a_run_killed_during_its_rerun_is_cleaned_up_by_the_next_writer(tmp_path):
    ops = profiles_ops()
    before = by_status(ops)
    ops.during_rerun = kill
    journal = killed(ops, tmp_path)
    assert journal.entry.step == "candidate"
    assert ops.ids("pending"), "the rerun's rows are there"
    ops.running = "op-1"  # and the rerun still runs

    repair, done = resume(ops, tmp_path, journal)

    assert ops.calls[:3] == ["running_operation", "cancel_rerun", "read:current,pending,archived"]
    assert "Deleted the 16 PENDING profiles this run created" in done
    assert by_status(ops) == {**before, "pending": set()}
    assert not repair.left_unfinished


def test_a_profile_candidate_is_cleaned_up_even_when_the_backup_is_gone(tmp_path):
    ops = profiles_ops()
    ops.during_rerun = kill
    journal = killed(ops, tmp_path)
    for path in tmp_path.iterdir():
        if path.is_file():
            path.unlink()  # the worker that wrote it is gone

    repair, done = resume(ops, tmp_path, journal)

    assert "Deleted the 16 PENDING profiles this run created" in done
    assert ops.ids("pending") == set()
    assert not repair.left_unfinished


def test_a_playbook_run_killed_after_its_rerun_gets_its_tombstoned_rows_back(tmp_path):
    ops = playbooks_ops()
    current_before = {(r["user_id"], r["content"]) for r in ops.rows.values() if not r["status"]}
    ops.during_rerun = kill
    journal = killed(ops, tmp_path)
    assert not ops.ids("current"), "H6: the rerun tombstoned every CURRENT row"

    _, done = resume(ops, tmp_path, journal)

    now = {(ops.rows[i]["user_id"], ops.rows[i]["content"]) for i in ops.ids("current")}
    assert now == current_before
    assert "8 CURRENT row(s) of 8 user(s)" in done


def test_a_run_killed_before_its_upgrade_reached_the_server_changes_nothing_back(tmp_path):
    ops = profiles_ops()
    before = by_status(ops)
    ops.before_upgrade = kill
    journal = killed(ops, tmp_path)
    assert journal.entry.step == "upgrade" and journal.entry.touched

    repair, done = resume(ops, tmp_path, journal)

    assert "Upgrade not applied" in done and "no downgrade ran" in done
    assert "downgrade" not in ops.calls
    assert by_status(ops) == {**before, "pending": set()}
    assert not repair.left_unfinished


def test_a_run_killed_after_its_upgrade_applied_in_full_is_kept(tmp_path):
    ops = profiles_ops()
    ops.after_upgrade = kill
    journal = killed(ops, tmp_path)
    after = by_status(ops)

    repair, done = resume(ops, tmp_path, journal)

    assert "had applied in full" in done and "kept" in done
    assert ops.writes() == []  # checked by id, nothing changed
    assert by_status(ops) == after
    assert not repair.left_unfinished


def test_a_run_killed_after_its_upgrade_applied_in_part_is_rolled_back_by_id(tmp_path):
    ops = profiles_ops(upgrade_skips={"p-2-0"})
    before = by_status(ops)
    ops.after_upgrade = kill
    journal = killed(ops, tmp_path)

    repair, done = resume(ops, tmp_path, journal)

    assert "Upgrade rolled back after: the run that sent it" in done
    assert "data equals the state before the upgrade" in done
    assert by_status(ops) == {**before, "pending": set()}
    assert not repair.left_unfinished


def test_a_repair_that_cannot_finish_keeps_the_journal(tmp_path):
    ops = profiles_ops(upgrade_fails_after=2)
    ops.after_upgrade = kill  # never reached: the upgrade fails first, then the rollback
    ops.recreate_failures = 99  # cannot re-create what the upgrade archived
    run, journal = journaled(ops, tmp_path)
    outcome = run.run()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "data DIFFERS" in outcome.message
    assert journal.entry is not None and journal.entry.step == "upgrade"
