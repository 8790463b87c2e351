"""The engine on a live server (H14) and with scoped runs, against the in-memory server:
rows users create during the run, and rows outside the run's sources, stay CURRENT."""

from __future__ import annotations

from pathlib import Path

from core.backup import open_backup
from core.outcome import Decision
from core.touched import read_touched_ids
from tests.unit.flows.fake_server import RERUN_STARTED_AT, FakeOps, playbook, profile
from tests.unit.flows.test_engine import (
    USERS,
    engine,
    fact,
    playbooks_ops,
    profile_rerun,
    profiles_ops,
)


def live_profile(pid: str, user: str, content: str, source: str = "chat") -> dict:
    """A row the server learned from live traffic while the rerun ran (H14)."""
    return {
        **profile(pid, user, content, source=source),
        "last_modified_timestamp": RERUN_STARTED_AT + 5,
    }


def rerun_with_live_traffic(ops: FakeOps) -> list[dict]:
    """The normal new generation; meanwhile user-0 teaches something new and a new user
    talks for the first time."""
    ops.rows["live-0"] = live_profile("live-0", "user-0", "user-0 moved to Lisbon")
    ops.rows["live-new"] = live_profile("live-new", "newcomer", "newcomer likes chess")
    return profile_rerun(ops)


def test_rows_users_create_during_the_rerun_stay_current(tmp_path: Path):
    ops = profiles_ops(rerun=rerun_with_live_traffic)
    outcome = engine(ops, tmp_path).run()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert {"live-0", "live-new"} <= ops.ids("current")
    assert ops.rows["live-0"]["last_modified_timestamp"] == RERUN_STARTED_AT + 5
    assert ops.rows["live-0"]["content"] == "user-0 moved to Lisbon"
    assert outcome.touched.kept_current == 1  # live-0 was archived, then kept; newcomer spared
    assert "live-0" in outcome.message
    touched = read_touched_ids(Path(outcome.touched.ids_file or ""))
    assert touched["kept_current"] == ["live-0"] and "live-0" not in touched["archived"]
    saved = {
        r["profile_id"] for r in open_backup(Path(outcome.touched.live_file or "")).iter_rows()
    }
    assert saved == {"live-0", "live-new"}  # the backup predates them: saved before the upgrade


def test_a_user_who_first_appears_during_the_rerun_is_not_lost(tmp_path: Path):
    ops = profiles_ops(rerun=rerun_with_live_traffic)
    outcome = engine(ops, tmp_path, only_affected_users=False).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert outcome.gate is not None and "newcomer" not in outcome.gate.markdown
    assert {"live-0", "live-new"} <= ops.ids("current")
    assert outcome.touched.kept_current == 2


def test_a_row_created_while_the_upgrade_runs_is_made_current_again(tmp_path: Path):
    ops = profiles_ops()
    ops.before_upgrade = lambda: ops.rows.update(
        late=live_profile("late", "user-1", "user-1 bought a bike")
    )
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert "late" in ops.ids("current")
    assert "1 live row(s)" in outcome.message


def test_a_rollback_keeps_the_rows_users_created(tmp_path: Path):
    ops = profiles_ops(rerun=rerun_with_live_traffic, upgrade_skips={"p-2-0"})
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert {"live-0", "live-new"} <= ops.ids("current")
    assert ops.ids("pending") == set()


def test_too_many_rows_to_keep_is_said_before_upgrading(tmp_path: Path):
    ops = profiles_ops(rerun=rerun_with_live_traffic)
    before = {s: ops.ids(s) for s in ("current", "archived")}
    outcome = engine(ops, tmp_path, max_rows_to_keep=0).run()
    assert outcome.decision is Decision.REFUSED
    assert "max_rows_to_keep=0" in outcome.message
    assert "upgrade" not in ops.calls
    assert {s: ops.ids(s) - {"live-0", "live-new"} for s in before} == before


def multi_source_ops() -> FakeOps:
    """Every user also has an email row; the run regenerates chat only."""
    ops = profiles_ops()
    for u, user in enumerate(USERS):
        ops.rows[f"e-{u}"] = profile(f"e-{u}", user, f"{user} writes formally", source="email")
    return ops


def test_a_single_source_run_keeps_the_other_sources_current(tmp_path: Path):
    ops = multi_source_ops()
    email = {f"e-{u}" for u in range(len(USERS))}
    outcome = engine(ops, tmp_path, sources=["chat"]).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert email <= ops.ids("current")  # same ids, still CURRENT
    assert outcome.gate is not None and outcome.gate.verdict == "pass", outcome.gate.sentence
    assert outcome.touched.kept_current == len(email)
    assert {f"c-{u}-{n}" for u in range(len(USERS)) for n in range(2)} <= ops.ids("archived")


def test_a_time_window_run_keeps_rows_outside_the_window(tmp_path: Path):
    ops = profiles_ops()
    ops.rows["old"] = {
        **profile("old", "user-0", "user-0 liked opera"),
        "last_modified_timestamp": 1_600_000_000,
    }
    start = "2023-11-01T00:00:00Z"  # after 1_600_000_000, before the seeded rows
    outcome = engine(ops, tmp_path, start_time=start).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert "old" in ops.ids("current")


def test_live_playbooks_come_back_as_new_current_rows_and_the_run_says_so(tmp_path: Path):
    ops = playbooks_ops()
    live = playbook(900, "user-1", "user-1 wants short answers")
    ops.during_rerun = lambda: ops.rows.update(
        {"900": {**live, "created_at": RERUN_STARTED_AT + 9}}
    )
    run = engine(ops, tmp_path)
    said_before_upgrade: list[str] = []
    ops.before_upgrade = lambda: said_before_upgrade.extend(run.summary.notes)
    outcome = run.run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    current = [ops.rows[i] for i in ops.ids("current")]
    kept = [r for r in current if r["content"] == "user-1 wants short answers"]
    assert [(r["user_id"], r["created_at"]) for r in kept] == [("user-1", RERUN_STARTED_AT + 9)]
    assert "900" in ops.ids("archived")  # the server cannot give it its id back
    assert "new rows" in outcome.message
    said = next(n for n in said_before_upgrade if "live row(s)" in n)
    assert "ids change" in said and "900" in said
    assert fact(USERS[0], 0, " a lot") in {r["content"] for r in current}


def test_rows_that_cannot_be_kept_current_roll_the_upgrade_back(tmp_path: Path):
    ops = profiles_ops(rerun=rerun_with_live_traffic, recreate_failures=1)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "were not all made CURRENT again" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert {"live-0", "live-new"} <= ops.ids("current")
    assert {f"c-{u}-{n}" for u in range(len(USERS)) for n in range(2)} <= ops.ids("current")
    assert ops.ids("pending") == set()
