"""Undo only what happened: a failed upgrade is first compared with the server's rows,
then nothing, the downgrade (only where it swaps exactly this upgrade back) or a repair by
id; nothing gone for another reason is re-created; every exit after the rerun and before
the upgrade leaves the candidate as a gate-blocked run does (H6 tombstones put back)."""

from __future__ import annotations

from core.outcome import Decision
from deployments import catalogue
from reflexio_api import TransientError
from tests.unit.flows.fake_server import playbook
from tests.unit.flows.test_engine import (
    USERS,
    engine,
    fact,
    playbooks_ops,
    profiles_ops,
)

STATUSES = ("current", "archived")


def rows_by_status(ops) -> dict[str, set[str]]:
    return {s: ops.ids(s) for s in STATUSES}


def test_an_upgrade_that_never_reached_the_server_is_not_undone(tmp_path):
    ops = profiles_ops(upgrade_refused=True)
    before = rows_by_status(ops)

    outcome = engine(ops, tmp_path).run()

    assert outcome.decision is Decision.UPGRADE_NOT_APPLIED, outcome.message
    assert "downgrade" not in ops.calls
    assert not any(c.startswith("recreate") for c in ops.calls)
    assert rows_by_status(ops) == before
    assert ops.ids("pending") == set()  # the candidate went, as a gate-blocked one's
    assert "0/16 promoted, 0/16 archived, 0/5 old ARCHIVED deleted" in outcome.message
    assert "no downgrade ran" in outcome.message
    event, payload = ops.events[-1]
    assert event == catalogue.EVENT_ROLLED_BACK and payload["path"] == "not applied"


def test_an_upgrade_applied_in_full_is_swapped_back_by_the_downgrade(tmp_path):
    ops = profiles_ops(upgrade_raises=True)
    before = rows_by_status(ops)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "downgrade" in ops.calls
    assert "path: the server's downgrade" in outcome.message
    assert "16/16 promoted, 16/16 archived, 5/5 old ARCHIVED deleted" in outcome.message
    assert rows_by_status(ops) == before
    # only the old ARCHIVED rows the upgrade deleted were re-created
    assert "recreate:5" in ops.calls


def test_an_upgrade_applied_in_part_is_repaired_by_id_without_the_downgrade(tmp_path):
    ops = profiles_ops(upgrade_fails_after=3)
    before = rows_by_status(ops)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "downgrade" not in ops.calls
    assert "path: repair by id only" in outcome.message
    assert "0/16 promoted, 3/16 archived, 5/5 old ARCHIVED deleted" in outcome.message
    assert rows_by_status(ops) == before
    assert "recreate:8" in ops.calls  # 3 archived back to CURRENT + 5 old ARCHIVED
    assert "data equals the state before the upgrade" in outcome.message


def test_a_rollback_does_not_bring_back_a_row_a_user_deleted_meanwhile(tmp_path):
    ops = profiles_ops(upgrade_raises=True)
    ops.before_upgrade = lambda: ops.rows.pop("c-3-0")
    before = rows_by_status(ops)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "c-3-0" not in ops.rows
    assert rows_by_status(ops) == {
        "current": before["current"] - {"c-3-0"},
        "archived": before["archived"],
    }
    assert "1 saved row(s) gone for another reason than this run" in outcome.message
    assert "c-3-0" in outcome.message
    # the downgrade would not swap back exactly (c-3-0 is not ARCHIVED): by id
    assert "downgrade" not in ops.calls


def test_a_failed_read_after_the_rerun_deletes_the_profile_candidate(tmp_path):
    ops = profiles_ops(read_fails={2: TransientError("503 from the gateway")})
    before = rows_by_status(ops)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ERROR, outcome.message
    assert "Stopped after the rerun, before any upgrade: 503 from the gateway" in outcome.message
    assert "Deleted the 16 PENDING profiles this run created" in outcome.message
    assert ops.ids("pending") == set()
    assert rows_by_status(ops) == before
    assert "upgrade" not in ops.calls


def test_a_failed_read_after_a_playbook_rerun_puts_every_tombstoned_row_back(tmp_path):
    ops = playbooks_ops(read_fails={2: TransientError("503 from the gateway")})
    before = {(r["user_id"], r["content"]) for r in ops.rows.values() if r["status"] is None}
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.ERROR, outcome.message
    now = {(ops.rows[i]["user_id"], ops.rows[i]["content"]) for i in ops.ids("current")}
    assert now == before
    assert "8 CURRENT row(s) of 8 user(s)" in outcome.message
    assert "upgrade" not in ops.calls


def test_only_the_rows_this_rerun_tombstoned_come_back(tmp_path):
    """user-7's CURRENT row is deleted by someone else during a rerun that covers only
    user-0: it is not this run's tombstone and stays gone."""

    def rerun(ops):
        ops.rows.pop("107")
        return [playbook(500, USERS[0], fact(USERS[0], 0), "pending")]

    ops = playbooks_ops(rerun=rerun)
    outcome = engine(ops, tmp_path).run()
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    contents = {ops.rows[i]["content"] for i in ops.ids("current")}
    assert fact(USERS[0], 0) in contents  # user-0's tombstoned row is back
    assert fact(USERS[7], 7) not in contents  # user-7's deleted row is not
    assert "1 CURRENT row(s) of 1 user(s)" in outcome.message
