"""Undoing a prompt check from its record, against an in-memory server (no network)."""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from core.check_record import CheckRecord, UpgradeStarted
from core.check_undo import CLOCK_SKEW_S, RunningRerun, undo_check

STARTED = 1_800_000_000
ORIGINAL = {"storage_config": {"api_key": "k"}, "extraction_prompt": "original"}
CANDIDATE = {**ORIGINAL, "extraction_prompt": "candidate"}


def playbook(pid: int, user: str, content: str, status: str | None = None) -> dict[str, Any]:
    return {"user_playbook_id": pid, "user_id": user, "content": content, "status": status}


@dataclass
class Server:
    """What the undo touches: config, profile statuses, v1 playbooks, running reruns."""

    config: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(CANDIDATE))
    profiles: dict[str, str] = field(default_factory=dict)
    playbook_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    running: dict[str, RunningRerun] = field(default_factory=dict)
    stops_on_cancel: bool = True
    restored: list[str] = field(default_factory=list)
    fail_on: str | None = None
    ids: count = field(default_factory=lambda: count(100))

    def _maybe_fail(self, call: str) -> None:
        if self.fail_on == call:
            raise RuntimeError(f"{call} failed")

    def set_config(self, config: Mapping[str, Any]) -> None:
        self._maybe_fail("set_config")
        self.config = copy.deepcopy(dict(config))

    def get_config(self) -> Mapping[str, Any]:
        return copy.deepcopy(self.config)

    def running_rerun(self, service: str) -> RunningRerun | None:
        return self.running.get(service)

    def cancel_rerun(self, service: str, operation_id: str) -> bool:
        if self.stops_on_cancel:
            del self.running[service]
        return self.stops_on_cancel

    def pending_profiles(self) -> set[str]:
        return {i for i, status in self.profiles.items() if status == "pending"}

    def delete_profiles(self, ids: Collection[str]) -> int:
        self._maybe_fail("delete_profiles")
        gone = [i for i in ids if i in self.profiles]
        for i in gone:
            del self.profiles[i]
        return len(gone)

    def backup_readable(self, backup: str) -> bool:
        return Path(backup).is_file()

    def restore_profiles(self, backup: str) -> str:
        self.restored.append(backup)
        self.profiles = {i: s for i, s in self.profiles.items() if not i.startswith("new")}
        self.profiles.update({"old-1": "current", "old-2": "current"})
        return "restored"

    def playbooks(self, agent_version: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.playbook_rows.values()]

    def delete_playbooks(self, ids: Collection[str]) -> int:
        gone = [int(i) for i in ids if int(i) in self.playbook_rows]
        for i in gone:
            del self.playbook_rows[i]
        return len(gone)

    def recreate_playbooks(self, rows: Sequence[Mapping[str, Any]]) -> int:
        for row in rows:
            pid = next(self.ids)
            self.playbook_rows[pid] = {**row, "user_playbook_id": pid, "status": None}
        return len(rows)


def record(**changes: Any) -> CheckRecord:
    fields: dict[str, Any] = {
        "server": "127.0.0.1:8081",
        "flow_run_id": "run-1",
        "started_at": STARTED,
        "promote": False,
        "profiles": True,
        "agent_version": None,
        "profiles_pending_before": frozenset({"stale"}),
        "playbooks_pending_before": frozenset(),
        "config": ORIGINAL,
    }
    return CheckRecord(**{**fields, **changes})


def test_config_back_and_only_the_checks_pending_profiles_deleted() -> None:
    server = Server(profiles={"old-1": "current", "stale": "pending", "new-1": "pending"})

    undo = undo_check(server, record())

    assert undo.complete, undo.sentence()
    assert server.config == ORIGINAL
    assert server.profiles == {"old-1": "current", "stale": "pending"}
    assert "put the original config back; deleted its 1 PENDING profile(s)" in undo.sentence()


def test_a_second_undo_finds_nothing_more_to_do() -> None:
    server = Server(profiles={"old-1": "current", "new-1": "pending"})
    undo_check(server, record())
    again = undo_check(server, record())
    assert again.complete and "deleted its 0 PENDING profile(s)" in again.sentence()
    assert server.profiles == {"old-1": "current"}


def test_the_checks_running_rerun_is_cancelled_before_rows_are_deleted() -> None:
    server = Server(profiles={"new-1": "pending"})
    server.running["profile_generation"] = RunningRerun("op-1", STARTED + 5)

    undo = undo_check(server, record())

    assert undo.complete and "cancelled its profile_generation rerun (op-1)" in undo.sentence()
    assert server.running == {} and server.profiles == {}


def test_a_rerun_that_will_not_stop_leaves_the_rows_and_says_so() -> None:
    server = Server(profiles={"new-1": "pending"}, stops_on_cancel=False)
    server.running["profile_generation"] = RunningRerun("op-1", STARTED)

    undo = undo_check(server, record())

    assert not undo.complete
    assert server.config == ORIGINAL  # the config comes back first, whatever else happens
    assert server.profiles == {"new-1": "pending"}
    assert "op-1) is still running" in undo.sentence()


def test_a_rerun_older_than_the_check_is_not_its_own() -> None:
    server = Server()
    server.running["profile_generation"] = RunningRerun("op-0", STARTED - CLOCK_SKEW_S - 1)
    undo = undo_check(server, record())
    assert undo.complete and "op-0" in server.running["profile_generation"].operation_id


def test_tombstoned_playbooks_come_back_and_the_candidate_goes() -> None:
    before = (playbook(1, "ann", "tea"), playbook(2, "bob", "maps"))
    server = Server(
        playbook_rows={
            1: playbook(1, "ann", "tea"),  # untouched
            # bob's row 2 was tombstoned (merged into 9): no longer listed
            9: playbook(9, "bob", "maps, again", "pending"),
            5: playbook(5, "cid", "older candidate", "pending"),  # pending before the check
        }
    )
    check = record(
        profiles=False,
        agent_version="v1",
        playbooks_pending_before=frozenset({"5"}),
        playbooks_before=before,
    )

    undo = undo_check(server, check)

    assert undo.complete, undo.sentence()
    by_content = {(r["user_id"], r["content"], r["status"]) for r in server.playbook_rows.values()}
    assert by_content == {
        ("ann", "tea", None),
        ("bob", "maps", None),
        ("cid", "older candidate", "pending"),
    }
    assert "re-created 1 CURRENT row(s)" in undo.sentence()


def test_an_upgraded_playbook_candidate_is_deleted_by_id_then_the_old_rows_come_back() -> None:
    before = (playbook(1, "ann", "tea"),)
    server = Server(
        playbook_rows={
            1: playbook(1, "ann", "tea", "archived"),  # archived by the upgrade
            9: playbook(9, "ann", "tea"),  # the promoted candidate: same words, new id
        }
    )
    check = record(profiles=False, agent_version="v1", playbooks_before=before).with_upgrade(
        UpgradeStarted("playbooks", 1, candidate_ids=frozenset({"9"}))
    )

    undo = undo_check(server, check)

    assert undo.complete, undo.sentence()
    assert 9 not in server.playbook_rows
    current = [r for r in server.playbook_rows.values() if r["status"] is None]
    assert [(r["user_id"], r["content"]) for r in current] == [("ann", "tea")]


def test_a_profile_upgrade_is_restored_from_its_backup(tmp_path: Path) -> None:
    backup = tmp_path / "profiles.manifest.json"
    backup.write_text("{}")
    server = Server(profiles={"new-1": "current", "old-1": "archived"})
    check = record().with_upgrade(UpgradeStarted("profiles", 1, backup=str(backup)))

    undo = undo_check(server, check)

    assert undo.complete, undo.sentence()
    assert server.restored == [str(backup)]
    assert server.profiles == {"old-1": "current", "old-2": "current"}


def test_a_profile_upgrade_that_did_not_apply_needs_no_backup() -> None:
    server = Server(profiles={"new-1": "pending", "new-2": "pending"})
    check = record().with_upgrade(UpgradeStarted("profiles", 2, backup="/elsewhere/b.json"))

    undo = undo_check(server, check)

    assert undo.complete, undo.sentence()
    assert server.restored == [] and server.profiles == {}
    assert "had not applied" in undo.sentence()


def test_an_applied_profile_upgrade_without_its_backup_is_left_and_named() -> None:
    server = Server(profiles={"new-1": "current"})
    check = record().with_upgrade(
        UpgradeStarted("profiles", 1, backup="/elsewhere/b.manifest.json", host="ci-runner-7")
    )

    undo = undo_check(server, check)

    assert not undo.complete
    assert server.config == ORIGINAL and server.profiles == {"new-1": "current"}
    assert "/elsewhere/b.manifest.json (written on ci-runner-7)" in undo.sentence()


def test_a_failing_step_reports_what_was_done_before_it() -> None:
    server = Server(profiles={"new-1": "pending"}, fail_on="delete_profiles")

    undo = undo_check(server, record())

    assert not undo.complete
    assert undo.done == ["put the original config back"]
    assert "stopped on RuntimeError: delete_profiles failed" in undo.sentence()


def test_a_config_that_does_not_read_back_equal_is_not_undone() -> None:
    class Lossy(Server):
        def get_config(self) -> Mapping[str, Any]:
            return {**self.config, "extra": 1}

    undo = undo_check(Lossy(), record())
    assert not undo.complete and "differs from the original" in undo.sentence()
