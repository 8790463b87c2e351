"""Rollback plans: what to delete and re-create, by id, to equal the backup again."""

from core.rollback import describe_residue, plan_rollback, playbooks_to_recreate
from core.state import IdSnapshot


def test_plan_deletes_what_the_run_created_and_recreates_what_differs():
    backed = {"c1": "current", "c2": "current", "x1": "archived", "x2": "archived"}
    now = IdSnapshot(
        current={"c1": "a", "x1": "a", "u1": "c"},  # x1 wrong status; u1 a user's new row
        archived={"c2": "a", "p1": "a"},  # c2 wrong status; p1 was promoted, not backed up
        pending={"p2": "b"},
    )
    plan = plan_rollback(backed, now, ours={"p1", "p2"})
    assert plan.delete == {"p1", "p2"}  # u1 is nobody's to delete
    assert plan.recreate == {"c2", "x1", "x2"}
    assert "2 row(s) this run created still there: p1, p2" in describe_residue(plan)


def test_nothing_to_do_when_equal():
    backed = {"c1": "current", "x1": "archived"}
    plan = plan_rollback(backed, IdSnapshot(current={"c1": "a"}, archived={"x1": "a"}), ours=())
    assert plan.empty and describe_residue(plan) == ""


def test_playbooks_to_recreate_are_the_tombstoned_current_rows() -> None:
    before = [
        {"user_id": "a", "content": "kept", "status": None},
        {"user_id": "b", "content": "merged away", "status": None},
        {"user_id": "c", "content": "was archived", "status": "archived"},
    ]
    live = [
        {"user_id": "a", "content": "kept", "status": None},
        {"user_id": "b", "content": "new candidate", "status": "pending"},
    ]
    assert playbooks_to_recreate(before, live) == [before[1]]
