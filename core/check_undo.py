"""Undo a prompt check from its record (core/check_record.py), step by step and idempotent.

What a check does itself when its candidate is not promoted, and what the next run on the
server does first when a check died on the way:

1. put the original config back whole, and read it back;
2. stop the check's reruns still running on the server (those of its services that started
   after it did), since rows cannot be cleaned while a rerun writes them;
3. profiles: when the check had set out to upgrade them, restore them from the backup the
   regeneration wrote (its touched-ids file says what the upgrade changed); then delete the
   check's PENDING profiles (every PENDING id that was not PENDING before it);
4. user playbooks: delete the check's PENDING rows (and, after an upgrade, its candidate by
   id), then re-create as CURRENT each row that was CURRENT before the rerun and has no
   CURRENT row of the same user and content now (H6: the rerun tombstoned it; same content,
   new ids).

Every step reads the server again, so running the undo twice does no harm: a later run
finishes what an interrupted one left. Nothing here imports Prefect or makes HTTP calls; the
effects go through a `CheckOps`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from core.check_record import CheckRecord, UpgradeStarted
from core.rollback import playbooks_to_recreate
from core.state import name_ids

CLOCK_SKEW_S = 300
"""A rerun that started up to this long before the check's record (by the server's clock)
still counts as the check's: the record's time is the runner's clock."""


class RunningRerun(NamedTuple):
    """A rerun the server reports in progress."""

    operation_id: str
    started_at: int | None


class CheckOps(Protocol):
    """The server calls an undo makes."""

    def set_config(self, config: Mapping[str, Any]) -> None: ...
    def get_config(self) -> Mapping[str, Any]: ...
    def running_rerun(self, service: str) -> RunningRerun | None: ...
    def cancel_rerun(self, service: str, operation_id: str) -> bool: ...
    def pending_profiles(self) -> set[str]: ...
    def delete_profiles(self, ids: Collection[str]) -> int: ...
    def backup_readable(self, backup: str) -> bool: ...
    def restore_profiles(self, backup: str) -> str: ...
    def playbooks(self, agent_version: str) -> list[dict[str, Any]]: ...
    def delete_playbooks(self, ids: Collection[str]) -> int: ...
    def recreate_playbooks(self, rows: Sequence[Mapping[str, Any]]) -> int: ...


@dataclass
class Undo:
    """What an undo did, and what it could not do (empty: the check is undone)."""

    done: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """The server is as the check found it (the record can go)."""
        return not self.left

    def sentence(self) -> str:
        """Both lists, in words."""
        text = "; ".join(self.done) or "nothing to do"
        if self.left:
            text += f". NOT undone: {'; '.join(self.left)}"
        return text + "."


def undo_check(ops: CheckOps, record: CheckRecord) -> Undo:
    """Undo what the check did (module docstring). A failing step ends the undo; its error
    is in `left` with everything that was done before it."""
    undo = Undo()
    try:
        _undo(ops, record, undo)
    except Exception as exc:  # any failure: say how far it got; the next run tries again
        undo.left.append(f"the undo stopped on {type(exc).__name__}: {str(exc)[:300]}")
    return undo


def _undo(ops: CheckOps, record: CheckRecord, undo: Undo) -> None:
    ops.set_config(record.config)
    if ops.get_config() != record.config:
        undo.left.append("the config read back after restoring it differs from the original")
        return
    undo.done.append("put the original config back")
    if not _stop_reruns(ops, record, undo):
        return
    if record.profiles:
        _undo_profiles(ops, record, undo)
    if record.agent_version:
        _undo_playbooks(ops, record, record.agent_version, undo)


def started_by_check(rerun: RunningRerun, record: CheckRecord) -> bool:
    """Whether a running rerun is the check's: it started after the check (or its start is
    unknown), allowing for CLOCK_SKEW_S between the server's and the runner's clocks."""
    return rerun.started_at is None or rerun.started_at >= record.started_at - CLOCK_SKEW_S


def _stop_reruns(ops: CheckOps, record: CheckRecord, undo: Undo) -> bool:
    """Cancel the check's running reruns; False when one does not stop."""
    for service in record.services:
        rerun = ops.running_rerun(service)
        if rerun is None or not started_by_check(rerun, record):
            continue
        if not ops.cancel_rerun(service, rerun.operation_id):
            undo.left.append(
                f"its {service} rerun ({rerun.operation_id}) is still running after being "
                "cancelled; its rows are cleaned once it has stopped: run again later"
            )
            return False
        undo.done.append(f"cancelled its {service} rerun ({rerun.operation_id})")
    return True


def _undo_profiles(ops: CheckOps, record: CheckRecord, undo: Undo) -> None:
    started = record.upgrade("profiles")
    if started is not None and not _undo_profile_upgrade(ops, record, started, undo):
        return
    own = ops.pending_profiles() - record.profiles_pending_before
    deleted = ops.delete_profiles(own)
    undo.done.append(f"deleted its {deleted} PENDING profile(s)")
    left = ops.pending_profiles() & own
    if left:
        undo.left.append(f"{len(left)} of its PENDING profile(s) remain: {name_ids(left)}")


def _undo_profile_upgrade(
    ops: CheckOps, record: CheckRecord, started: UpgradeStarted, undo: Undo
) -> bool:
    """Restore the profiles from the backup the upgrade was made after (idempotent, and a
    no-op when the upgrade never applied); without the backup, go on only when the
    candidate is still PENDING (the upgrade promotes every PENDING row at once)."""
    if started.backup and ops.backup_readable(started.backup):
        restored = ops.restore_profiles(started.backup)
        undo.done.append(f"restored the profiles it had set out to upgrade: {restored}")
        return True
    own = ops.pending_profiles() - record.profiles_pending_before
    if len(own) >= started.candidate_count:
        undo.done.append("its profile upgrade had not applied (its candidate is PENDING)")
        return True
    undo.left.append(
        f"its profile upgrade may have applied and its backup {started.backup} (written on "
        f"{started.host or 'an unknown machine'}) is not on this machine: run "
        "restore-profiles with that backup where it is, then delete this record; if the "
        "backup is gone, deleting the record accepts the profiles as they are"
    )
    return False


def _undo_playbooks(ops: CheckOps, record: CheckRecord, agent_version: str, undo: Undo) -> None:
    rows = ops.playbooks(agent_version)
    ids = {str(r["user_playbook_id"]) for r in rows}
    own = {str(r["user_playbook_id"]) for r in rows if r.get("status") == "pending"}
    own -= record.playbooks_pending_before
    started = record.upgrade("playbooks")
    if started is not None:
        own |= started.candidate_ids & ids
    deleted = ops.delete_playbooks(own)
    missing = playbooks_to_recreate(record.playbooks_before, ops.playbooks(agent_version))
    recreated = ops.recreate_playbooks(missing) if missing else 0
    undo.done.append(
        f"deleted its {deleted} PENDING/candidate user playbook(s) of {agent_version} and "
        f"re-created {recreated} CURRENT row(s) its rerun had tombstoned (H6; same content, "
        "new ids)"
    )
    now = ops.playbooks(agent_version)
    still = own & {str(r["user_playbook_id"]) for r in now}
    lost = playbooks_to_recreate(record.playbooks_before, now)
    if still:
        undo.left.append(f"{len(still)} of its user playbook(s) remain: {name_ids(still)}")
    if lost:
        users = sorted({str(r.get("user_id")) for r in lost})
        undo.left.append(
            f"{len(lost)} CURRENT user playbook(s) of {len(users)} user(s) are still missing "
            f"({', '.join(users[:5])})"
        )
