"""Rollback plans: what to delete and re-create, by id, to equal the backup again."""

from core.rollback import (
    describe_gone,
    describe_residue,
    plan_rollback,
    playbooks_to_recreate,
    upgrade_effect,
)
from core.state import ExpectedState, IdSnapshot


def test_plan_deletes_what_the_run_created_and_recreates_what_differs():
    backed = {"c1": "current", "c2": "current", "x1": "archived", "x2": "archived"}
    now = IdSnapshot(
        current={"c1": "a", "x1": "a", "u1": "c"},  # x1 wrong status; u1 a user's new row
        archived={"c2": "a", "p1": "a"},  # c2 wrong status; p1 was promoted, not backed up
        pending={"p2": "b"},
    )
    plan = plan_rollback(backed, now, ours={"p1", "p2"}, deleted_by_run={"x2"})
    assert plan.delete == {"p1", "p2"}  # u1 is nobody's to delete
    assert plan.recreate == {"c2", "x1", "x2"}
    assert not plan.gone
    assert "2 row(s) this run created still there: p1, p2" in describe_residue(plan)


def test_a_saved_row_gone_for_another_reason_is_not_recreated():
    """x2 was deleted by the run's upgrade (H1); c3 and x3 left for other reasons (a user,
    an erasure, TTL, dedup): they stay gone and are named."""
    backed = {"c1": "current", "c3": "current", "x2": "archived", "x3": "archived"}
    now = IdSnapshot(archived={"c1": "a"})
    plan = plan_rollback(backed, now, ours=(), deleted_by_run={"x2"})
    assert plan.recreate == {"c1", "x2"}
    assert plan.gone == {"c3", "x3"}
    assert "2 saved row(s) gone for another reason" in describe_gone(plan.gone)
    assert "c3, x3" in describe_gone(plan.gone)


def test_nothing_to_do_when_equal():
    backed = {"c1": "current", "x1": "archived"}
    now = IdSnapshot(current={"c1": "a"}, archived={"x1": "a"})
    plan = plan_rollback(backed, now, ours=(), deleted_by_run=())
    assert plan.empty and describe_residue(plan) == "" and describe_gone(plan.gone) == ""


EXPECTED = ExpectedState(
    promoted=frozenset({"p1", "p2"}),
    current=frozenset({"p1", "p2", "k1"}),
    archived=frozenset({"c1", "c2"}),
    deleted=frozenset({"x1"}),
)


def test_an_upgrade_that_changed_nothing_is_told_apart():
    before = IdSnapshot(
        current={"c1": "a", "c2": "b", "k1": "k"},
        pending={"p1": "a", "p2": "b"},
        archived={"x1": "a"},
    )
    effect = upgrade_effect(EXPECTED, before)
    assert effect.nothing and not effect.downgrade_swaps_back
    assert effect.describe() == "0/2 promoted, 0/2 archived, 0/1 old ARCHIVED deleted"


def test_the_downgrade_only_where_it_swaps_exactly_this_upgrade_back():
    done = IdSnapshot(current={"p1": "a", "p2": "b", "k1": "k"}, archived={"c1": "a", "c2": "b"})
    assert upgrade_effect(EXPECTED, done).downgrade_swaps_back
    # promotion stopped half-way: the downgrade still swaps back exactly what was archived
    half = IdSnapshot(
        current={"p1": "a", "k1": "k"}, pending={"p2": "b"}, archived={"c1": "a", "c2": "b"}
    )
    assert upgrade_effect(EXPECTED, half).downgrade_swaps_back
    # only one row archived: the repair by id, no downgrade
    part = IdSnapshot(
        current={"c2": "b", "k1": "k"}, pending={"p1": "a", "p2": "b"}, archived={"c1": "a"}
    )
    effect = upgrade_effect(EXPECTED, part)
    assert not effect.nothing and not effect.downgrade_swaps_back
    # the old ARCHIVED row was not deleted: the downgrade would make it CURRENT
    kept_old = IdSnapshot(
        current={"p1": "a", "p2": "b", "k1": "k"}, archived={"c1": "a", "c2": "b", "x1": "a"}
    )
    assert not upgrade_effect(EXPECTED, kept_old).downgrade_swaps_back
    # only the old ARCHIVED row went: something was applied, by id
    deleted_only = IdSnapshot(
        current={"c1": "a", "c2": "b", "k1": "k"}, pending={"p1": "a", "p2": "b"}
    )
    effect = upgrade_effect(EXPECTED, deleted_only)
    assert not effect.nothing and effect.deleted == {"x1"}


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
