"""Expected state after an upgrade and verification by identity."""

from __future__ import annotations

import pytest

from core.kinds import PROFILES, user_playbooks
from core.state import (
    IdSnapshot,
    VerificationFailed,
    expected_after_upgrade,
    id_problems,
    name_ids,
    vanished_ids,
    verify_ids,
)


def snapshot() -> IdSnapshot:
    return IdSnapshot(
        current={"c1": "a", "c2": "a", "c3": "b", "c4": "z"},
        pending={"p1": "a", "p2": "b"},
        archived={"x1": "a", "x2": "q"},
    )


def after(**statuses: dict[str, str]) -> IdSnapshot:
    return IdSnapshot(**statuses)


def test_only_affected_users_spares_the_others_current_rows():
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=True)
    assert expected.current == {"p1", "p2", "c4"}
    assert expected.archived == {"c1", "c2", "c3"}
    assert expected.deleted == {"x1", "x2"}  # H1: every old ARCHIVED row, whoever's


def test_organisation_wide_upgrade_archives_every_current_row():
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=False)
    assert expected.current == {"p1", "p2"}
    assert expected.archived == {"c1", "c2", "c3", "c4"}


def test_playbook_upgrades_never_spare_users():
    expected = expected_after_upgrade(user_playbooks("v1"), snapshot(), only_affected_users=True)
    assert expected.archived == {"c1", "c2", "c3", "c4"}


def test_exact_ids_verify():
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=True)
    good = after(
        current={"p1": "a", "p2": "b", "c4": "z"},
        archived={"c1": "a", "c2": "a", "c3": "b"},
    )
    verify_ids(expected, good, backed_up={"c1", "c2", "c3", "c4", "x1", "x2"})


def test_a_row_not_promoted_is_named():
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=True)
    stuck = after(
        current={"p1": "a", "c4": "z"},
        pending={"p2": "b"},
        archived={"c1": "a", "c2": "a", "c3": "b"},
    )
    with pytest.raises(VerificationFailed) as caught:
        verify_ids(expected, stuck, backed_up={"c1", "c2", "c3", "c4", "x1", "x2"})
    message = str(caught.value)
    assert "1 row(s) not promoted: p2" in message
    assert "1 row(s) still PENDING: p2" in message


def test_a_row_archived_that_should_have_stayed_current_is_named():
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=True)
    wrong = after(
        current={"p1": "a", "p2": "b"},
        archived={"c1": "a", "c2": "a", "c3": "b", "c4": "z"},
    )
    problems = id_problems(expected, wrong, backed_up={"c1", "c2", "c3", "c4", "x1", "x2"})
    assert problems == [
        "1 id(s) not CURRENT: c4",
        "1 unexpected ARCHIVED id(s): c4",
    ]


def test_a_deleted_row_missing_from_the_backup_is_lost():
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=True)
    good = after(
        current={"p1": "a", "p2": "b", "c4": "z"},
        archived={"c1": "a", "c2": "a", "c3": "b"},
    )
    problems = id_problems(expected, good, backed_up={"c1", "c2", "c3", "c4", "x1"})
    assert problems == ["1 row(s) gone and NOT in the backup: x2"]


def test_a_row_a_user_removed_after_the_upgrade_is_not_the_upgrade_s_doing():
    """On a live server a user, dedup or expiry removes rows between the upgrade and its
    check: named, not a reason to undo the upgrade."""
    expected = expected_after_upgrade(PROFILES, snapshot(), only_affected_users=True)
    live = after(current={"p1": "a", "c4": "z"}, archived={"c1": "a", "c2": "a"})
    backed = {"c1", "c2", "c3", "c4", "x1", "x2"}
    assert vanished_ids(expected, live) == {"p2", "c3"}
    assert id_problems(expected, live, backed_up=backed) == []


def test_more_rows_gone_than_a_live_server_removes_is_the_upgrade_s_doing():
    rows = {f"c{n}": "u" for n in range(40)}
    before = IdSnapshot(current=rows, pending={"p": "u"})
    expected = expected_after_upgrade(PROFILES, before, only_affected_users=True)
    deleted_instead_of_archived = after(current={"p": "u"}, archived={"c0": "u"})
    problems = id_problems(expected, deleted_instead_of_archived, backed_up=set(rows))
    assert problems[0].startswith("39 row(s) gone from every status, more than the 10")
    assert "38 id(s) not ARCHIVED" not in problems[0]
    assert any("39 id(s) not ARCHIVED" in p for p in problems)


def test_name_ids_caps_long_lists():
    ids = [f"id-{n:03d}" for n in range(25)]
    assert name_ids(ids).endswith("id-009 and 15 more")
    assert name_ids(["b", "a"]) == "a, b"
