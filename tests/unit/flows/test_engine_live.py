"""The engine on a live server (H14) and with scoped runs, against the in-memory server:
rows users create during the run, and rows outside the run's sources, stay CURRENT; rows
without a source (H15), time windows and runs of several sources are gated for what the
upgrade replaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.backup import open_backup
from core.outcome import Decision
from core.regeneration import Refused
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


WINDOW_START = "2024-01-01T00:00:00Z"  # after every seeded row's timestamp (1_700_000_000)


def test_a_time_window_run_gates_against_every_row_the_upgrade_archives(tmp_path: Path):
    """Every row's timestamp is the last upgrade's, before the window: the rows the window
    would have picked are none, yet the upgrade archives them all."""
    ops = profiles_ops()
    current = ops.ids("current")
    run = engine(ops, tmp_path, start_time=WINDOW_START)
    outcome = run.run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.gate_baseline == current
    assert current <= ops.ids("archived") and outcome.touched.kept_current == 0
    assert outcome.gate is not None and "whatever its timestamp" in outcome.gate.markdown
    assert any("whatever its timestamp" in note for note in run.summary.notes)


def unsourced_ops() -> FakeOps:
    """After a full rerun: every CURRENT row carries no source (H15); every user also has
    an email row learned since."""
    ops = multi_source_ops()
    for row in ops.rows.values():
        if row["source"] == "chat":
            row["source"] = ""
    return ops


def test_a_source_run_on_rows_without_a_source_is_refused_before_any_write(tmp_path: Path):
    ops = unsourced_ops()
    with pytest.raises(
        Refused, match=r"16 CURRENT profiles of 8 user\(s\) carry no source"
    ) as info:
        engine(ops, tmp_path, sources=["chat"]).run()
    assert "replace_unsourced_rows=true" in str(info.value) and "volume" not in str(info.value)
    assert ops.writes() == [] and not any(c.startswith("rerun") for c in ops.calls)


def test_replace_unsourced_rows_gates_against_them_and_replaces_them(tmp_path: Path):
    ops = unsourced_ops()
    bare = {i for i, r in ops.rows.items() if r["status"] is None and not r["source"]}
    email = ops.ids("current") - bare
    run = engine(ops, tmp_path, sources=["chat"], replace_unsourced_rows=True)
    outcome = run.run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.gate_baseline == bare
    assert bare <= ops.ids("archived")  # replaced, not kept
    assert email <= ops.ids("current") and outcome.touched.kept_current == len(email)
    said = "16 CURRENT profiles of 8 user(s) carry no source (H15) and are replaced"
    assert outcome.gate is not None and said in outcome.gate.markdown
    assert any(said in note for note in run.summary.notes)


def per_source_rerun(ops: FakeOps) -> list[dict]:
    """chat: the same facts for every user; email: rows for 3 of the 8 users it processed
    (the rest dropped without an error, H2)."""
    source = ops.calls[-1].removeprefix("rerun:")
    if source == "chat":
        return [{**r, "source": "chat"} for r in profile_rerun(ops)]
    return [
        profile(f"pe-{u}", user, f"{user} writes formally a lot", "pending", source="email")
        for u, user in enumerate(USERS[:3])
    ]


def test_a_source_whose_rerun_yields_little_blocks_though_the_other_yields_for_all(
    tmp_path: Path,
):
    """19 candidate rows for 24 only warns in total, and the larger processed count (8)
    had rows for all 8 users: judged per source, email's 3 of 8 fails."""
    ops = multi_source_ops()
    ops.rerun_output = per_source_rerun
    ops.users_processed = len(USERS)
    current = ops.ids("current")
    outcome = engine(ops, tmp_path, sources=["chat", "email"]).run()
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert ops.ids("current") == current and "upgrade" not in ops.calls
    assert outcome.gate is not None
    assert "3 of the 8 users the email rerun processed" in outcome.gate.markdown


def test_a_rerun_that_reports_no_user_processed_blocks(tmp_path: Path):
    ops = profiles_ops(users_processed=0)
    current = ops.ids("current")
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert ops.ids("current") == current and "upgrade" not in ops.calls
    assert "reported 0 users processed" in outcome.message


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
