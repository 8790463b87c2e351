"""Every branch of the regeneration engine, against an in-memory server (no network, no
Prefect API): seconds, not minutes. The real-server tests are in tests/integration/."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.backup import open_backup
from core.kinds import PROFILES, user_playbooks
from core.listing import ListingNotProven
from core.outcome import Decision
from core.regeneration import Engine, Refused
from core.stall import Stall
from core.touched import read_touched_ids
from core.upgrade import UpgradeUndetermined
from deployments import catalogue
from flows.params import PlaybookRegenerationParams, RegenerationParams
from tasks.report import RunSummary
from tests.unit.flows.fake_server import FakeOps, playbook, profile

USERS = [f"user-{n}" for n in range(8)]
TOPICS = ["green tea", "hiking trips", "jazz records", "python code", "city bikes"]


def fact(user: str, n: int, generation: str = "") -> str:
    return f"{user} likes {TOPICS[n % len(TOPICS)]}{generation}"


def profile_rows() -> dict[str, dict]:
    """8 users with 2 CURRENT rows each, and 5 ARCHIVED rows."""
    rows = {}
    for u, user in enumerate(USERS):
        for n in range(2):
            rows[f"c-{u}-{n}"] = profile(f"c-{u}-{n}", user, fact(user, u + n))
    for n in range(5):
        rows[f"a-{n}"] = profile(f"a-{n}", USERS[n], fact(USERS[n], n, " (old)"), "archived")
    return rows


def profile_rerun(ops: FakeOps) -> list[dict]:
    """The new generation: the same facts for every user with interactions, new ids."""
    return [
        profile(f"p-{u}-{n}", user, fact(user, u + n, " a lot"), "pending")
        for u, user in enumerate(USERS)
        for n in range(2)
    ]


def junk_rerun(ops: FakeOps) -> list[dict]:
    """A broken generation: one empty row per user."""
    return [profile(f"p-{u}", user, "", "pending") for u, user in enumerate(USERS)]


def engine(ops: FakeOps, tmp_path: Path, **params) -> Engine:
    kind_params = (
        RegenerationParams if ops.kind.agent_version is None else PlaybookRegenerationParams
    )
    return Engine(
        ops,
        kind_params(backup_dir=tmp_path, reflexio_url=ops.url, **params),
        RunSummary(title="test", server=ops.url),
        "run-1234abcd",
    )


def profiles_ops(**faults) -> FakeOps:
    return FakeOps(PROFILES, profile_rows(), faults.pop("rerun", profile_rerun), **faults)


def test_upgrade_verified_by_ids_and_every_removed_row_backed_up(tmp_path):
    ops = profiles_ops()
    before_current, before_archived = ops.ids("current"), ops.ids("archived")

    outcome = engine(ops, tmp_path).run()

    assert outcome.decision is Decision.UPGRADED, outcome.message
    promoted = {f"p-{u}-{n}" for u in range(8) for n in range(2)}
    assert ops.ids("current") == promoted
    assert ops.ids("archived") == before_current
    backup = open_backup(Path(outcome.backup))
    backed = {r["profile_id"] for r in backup.iter_rows()}
    assert before_archived <= backed  # what the upgrade deleted (H1) is in the backup
    assert backed == before_current | before_archived
    touched = read_touched_ids(Path(outcome.touched.ids_file))
    assert set(touched["promoted"]) == promoted
    assert set(touched["deleted"]) == before_archived
    assert set(touched["archived"]) == before_current
    assert [e for e, _ in ops.events] == [catalogue.EVENT_GATE_PASSED, catalogue.EVENT_UPGRADED]


def test_backup_is_written_before_any_write(tmp_path):
    ops = profiles_ops()
    engine(ops, tmp_path).run()
    first_write = next(i for i, c in enumerate(ops.calls) if c in ops.writes())
    assert ops.calls.index("read:current,pending,archived") < first_write


def test_a_user_without_new_rows_keeps_current_and_is_not_lost(tmp_path):
    ops = profiles_ops()
    ops.rows["c-9-0"] = profile("c-9-0", "user-9", "user-9 likes chess")
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert "c-9-0" in ops.ids("current")


def test_organisation_wide_upgrade_gates_every_user_it_would_archive(tmp_path):
    ops = profiles_ops()
    ops.rows["c-9-0"] = profile("c-9-0", "user-9", "user-9 likes chess")
    outcome = engine(ops, tmp_path, only_affected_users=False).run()
    assert outcome.decision is Decision.GATE_BLOCKED
    assert "coverage: 1 of 9 users" in outcome.message
    assert "c-9-0" in ops.ids("current")


def test_a_row_the_server_did_not_promote_rolls_back_and_is_named(tmp_path):
    ops = profiles_ops(upgrade_skips={"p-3-1"})
    before = {s: ops.ids(s) for s in ("current", "archived")}

    outcome = engine(ops, tmp_path).run()

    assert outcome.decision is Decision.ROLLED_BACK
    assert "1 row(s) not promoted: p-3-1" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert {s: ops.ids(s) for s in ("current", "archived")} == before
    assert ops.ids("pending") == set()
    assert [e for e, _ in ops.events][-1] == catalogue.EVENT_ROLLED_BACK


def test_an_upgrade_that_errors_after_applying_rolls_back(tmp_path):
    ops = profiles_ops(upgrade_raises=True)
    before = {s: ops.ids(s) for s in ("current", "archived")}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK
    assert "boom" in outcome.message
    assert {s: ops.ids(s) for s in ("current", "archived")} == before


def test_an_upgrade_that_may_still_run_is_not_rolled_back(tmp_path):
    ops = profiles_ops(upgrade_lost=UpgradeUndetermined("did not settle"))
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ERROR
    assert "did not settle" in outcome.message and outcome.backup in outcome.message
    assert ops.writes()[-1] == "upgrade"


def test_a_failed_downgrade_is_repaired_by_id_from_the_backup(tmp_path):
    ops = profiles_ops(upgrade_skips={"p-0-0"}, downgrade_raises=True)
    before = {s: ops.ids(s) for s in ("current", "archived")}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK
    assert "downgrade failed" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert {s: ops.ids(s) for s in ("current", "archived")} == before


def test_stale_pending_refused_before_any_write(tmp_path):
    ops = profiles_ops()
    ops.rows["old-p"] = profile("old-p", "user-1", "stale", "pending")
    with pytest.raises(Refused, match="1 profiles are already PENDING"):
        engine(ops, tmp_path).run()
    assert ops.writes() == []


def test_stale_pending_discarded_when_asked_and_kept_in_the_backup(tmp_path):
    ops = profiles_ops()
    ops.rows["old-p"] = profile("old-p", "user-1", "stale", "pending")
    outcome = engine(ops, tmp_path, discard_stale_pending=True).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert "old-p" not in ops.rows
    assert "old-p" in {r["profile_id"] for r in open_backup(Path(outcome.backup)).iter_rows()}
    assert read_touched_ids(Path(outcome.touched.ids_file))["discarded_stale_pending"] == ["old-p"]
    assert outcome.touched.discarded_stale == 1


def test_an_unproven_listing_stops_before_any_write(tmp_path):
    ops = profiles_ops(read_raises=ListingNotProven("current: listed 9, the server counts 10"))
    with pytest.raises(ListingNotProven):
        engine(ops, tmp_path).run()
    assert ops.writes() == []


def test_stall_flag_stops_before_the_rerun(tmp_path):
    ops = profiles_ops(stall=Stall("auth_error", "key rejected", inferred=False))
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.STALLED
    assert ops.calls == ["check_stall"]


def test_failed_rerun_deletes_the_profile_candidate(tmp_path):
    ops = profiles_ops(rerun_status="failed")
    before = {s: ops.ids(s) for s in ("current", "archived")}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GENERATION_FAILED
    assert ops.ids("pending") == set()
    assert {s: ops.ids(s) for s in ("current", "archived")} == before


def test_gate_fail_deletes_the_candidate_and_leaves_current(tmp_path):
    ops = profiles_ops(rerun=junk_rerun)
    before = {s: ops.ids(s) for s in ("current", "archived")}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert outcome.gate is not None and outcome.gate.verdict == "fail"
    assert ops.ids("pending") == set()
    assert {s: ops.ids(s) for s in ("current", "archived")} == before
    assert "upgrade" not in ops.calls


def test_dry_run_leaves_no_trace(tmp_path):
    ops = profiles_ops()
    before = {s: ops.ids(s) for s in ("current", "pending", "archived")}
    outcome = engine(ops, tmp_path, dry_run=True).run()
    assert outcome.decision is Decision.DRY_RUN
    assert {s: ops.ids(s) for s in ("current", "pending", "archived")} == before


# --- playbooks (H6) -------------------------------------------------------------------


def playbook_rows() -> dict[str, dict]:
    rows = {}
    for u, user in enumerate(USERS):
        rows[str(100 + u)] = playbook(100 + u, user, fact(user, u))
    for n in range(3):
        rows[str(200 + n)] = playbook(200 + n, USERS[n], fact(USERS[n], n, " (old)"), "archived")
    return rows


def playbook_rerun(ops: FakeOps) -> list[dict]:
    return [
        playbook(500 + u, user, fact(user, u, " a lot"), "pending") for u, user in enumerate(USERS)
    ]


def playbooks_ops(**faults) -> FakeOps:
    return FakeOps(
        user_playbooks("v1"), playbook_rows(), faults.pop("rerun", playbook_rerun), **faults
    )


def test_playbooks_upgrade_archives_what_the_rerun_left_current(tmp_path):
    ops = playbooks_ops()
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert ops.ids("current") == {str(500 + u) for u in range(8)}
    assert ops.ids("archived") == set()  # every CURRENT row was tombstoned by the rerun (H6)
    assert "aggregate" in ops.calls


def test_playbook_gate_fail_keeps_the_candidate_and_puts_tombstoned_rows_back(tmp_path):
    ops = playbooks_ops(rerun=lambda ops: [playbook(500, USERS[0], fact(USERS[0], 0), "pending")])
    before = {(r["user_id"], r["content"]) for r in ops.rows.values() if r["status"] is None}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert ops.ids("pending") == {"500"}  # merged rows point at it
    assert ops.rows["100"]["status"] == "merged"
    now = {(ops.rows[i]["user_id"], ops.rows[i]["content"]) for i in ops.ids("current")}
    assert now == before  # user-0 has its CURRENT row again (a new id)
    assert "100" not in ops.ids("current")
    assert "1 CURRENT row(s) of 1 user(s)" in outcome.message and "discard" not in outcome.message


def test_playbook_rerun_that_times_out_is_cancelled_and_tombstoned_rows_put_back(tmp_path):
    ops = playbooks_ops(wait_times_out=True)
    before = {(r["user_id"], r["content"]) for r in ops.rows.values() if r["status"] is None}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GENERATION_FAILED, outcome.message
    assert "did not finish within" in outcome.message and "cancelled" in outcome.message
    assert ops.calls.index("cancel_rerun") < ops.calls.index("recreate:8")
    now = {(ops.rows[i]["user_id"], ops.rows[i]["content"]) for i in ops.ids("current")}
    assert now == before
    assert "upgrade" not in ops.calls


def test_playbook_rollback_recreates_tombstoned_rows_with_new_ids(tmp_path):
    ops = playbooks_ops(upgrade_skips={"503"})
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK
    assert "not promoted: 503" in outcome.message
    current = [ops.rows[i] for i in ops.ids("current")]
    assert sorted(r["content"] for r in current) == sorted(fact(u, n) for n, u in enumerate(USERS))
    assert "re-created row(s) have new ids" in outcome.message
    assert "3 ARCHIVED row(s) the upgrade deleted cannot be re-created" in outcome.message


def test_a_rollback_that_cannot_recreate_names_what_differs_and_the_command(tmp_path):
    ops = profiles_ops(upgrade_skips={"p-0-0"}, recreate_failures=99)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK
    assert "the rollback stopped: add refused" in outcome.message
    assert "5 backed-up row(s) missing or with another status: a-0, a-1, a-2" in outcome.message
    assert f"To finish: run restore-profiles with backup_file={outcome.backup}" in outcome.message


def test_a_rerun_that_silently_drops_users_is_not_upgraded_with_defaults(tmp_path):
    """H2: the provider failed 3 of 8 users' calls; the rerun says completed. Those users
    keep their CURRENT rows (only_affected_users), so no per-user check sees them: the
    rerun's own user count does."""

    def dropping_rerun(ops: FakeOps) -> list[dict]:
        return [r for r in profile_rerun(ops) if r["user_id"] not in USERS[:3]]

    ops = profiles_ops(rerun=dropping_rerun, users_processed=8)
    before = {s: ops.ids(s) for s in ("current", "archived")}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert "rerun yield: 5 of the 8 users the rerun processed got candidate rows" in (
        outcome.message
    )
    assert {s: ops.ids(s) for s in ("current", "archived")} == before
    assert "upgrade" not in ops.calls
