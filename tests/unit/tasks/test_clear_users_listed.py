"""A clear-user-data run killed half-way: the ids it listed travel in the journal, so the
run that finishes it still finds the rows the server anonymised (H9) as the users'."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.params import ClearUsersParams
from tasks.clear_users import Inventory, UserReport, find_leftovers


def test_rows_an_earlier_run_listed_and_the_server_anonymised_are_the_users_again():
    killed_saw = Inventory(
        profiles={"p-alice": "alice", "p-bob": "bob"}, playbooks={7: "alice", 8: "bob"}
    )
    # alice was cleared before the kill: her playbook 7 survived anonymised (H9).
    now = Inventory(profiles={"p-bob": "bob"}, playbooks={7: None, 8: "bob", 9: None})
    journal = ClearUsersParams(
        user_ids=["alice", "bob"], listed_before=killed_saw.listed(["alice", "bob"])
    )

    before = now.with_listed(journal.listed_before)

    assert before.playbooks == {7: "alice", 8: "bob", 9: None}  # 9: nobody's we know of
    assert before.profiles == now.profiles
    report = UserReport(user_id="alice")
    find_leftovers(before, Inventory(playbooks={7: None, 9: None}), report)
    assert report.leftover_playbooks == [7] and report.anonymised == 1
    # Without the earlier listing, alice's anonymised row is nobody's: it would stay.
    find_leftovers(now, Inventory(playbooks={7: None, 9: None}), report)
    assert report.leftover_playbooks == []


def test_a_row_now_of_another_user_is_not_taken():
    now = Inventory(playbooks={7: "carol"})
    assert now.with_listed({"alice": {"profiles": [], "playbooks": [7]}}).playbooks == {7: "carol"}


def test_listed_before_names_only_users_being_erased():
    with pytest.raises(
        ValidationError, match=r"listed_before names users not in user_ids: \['eve'\]"
    ):
        ClearUsersParams(
            user_ids=["alice"], listed_before={"eve": {"profiles": [], "playbooks": []}}
        )
