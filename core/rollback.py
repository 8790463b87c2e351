"""Undoing a failed upgrade: what it did, read from the server, then only that, by id.

First the server's rows are compared with what the upgrade had to do (`UpgradeEffect`):
- nothing applied (every candidate row still PENDING, no row archived, no old ARCHIVED row
  gone): nothing is changed back, the candidate is treated like a gate-blocked one's;
- applied so far that the server's own downgrade provably swaps it back (every row the
  upgrade had to archive is ARCHIVED and no other row is): the downgrade, then the repair
  by id of what it cannot do (delete the candidate, re-create the old ARCHIVED rows the
  upgrade deleted, H1);
- anything else (part of it): the repair by id alone, no org-wide downgrade.

The repair by id (`plan_rollback`) never resurrects: a saved row is re-created only where
this run deleted it (the old ARCHIVED rows its upgrade deleted; the CURRENT playbooks its
rerun tombstoned, H6); a row it archived is put back only while it is still there. A saved
row gone for any other reason (a user or an erasure deleted it, TTL expired it, dedup
superseded it) stays gone and is counted. Rows nobody saved (users created them after the
upgrade) are not the rollback's to delete.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.kinds import Status
from core.state import ExpectedState, IdSnapshot, name_ids


@dataclass(frozen=True)
class UpgradeEffect:
    """What a failed upgrade did, by id, as the server shows it now."""

    promoted: frozenset[str]
    """Candidate rows that are CURRENT now."""
    archived: frozenset[str]
    """Rows the upgrade had to archive that are ARCHIVED now."""
    deleted: frozenset[str]
    """Old ARCHIVED rows the upgrade had to delete that are gone now."""
    other_archived: frozenset[str]
    """ARCHIVED rows now that the upgrade had not to archive (old ones it left)."""
    expected: ExpectedState

    @property
    def nothing(self) -> bool:
        """The upgrade changed no row."""
        return not (self.promoted or self.archived or self.deleted)

    @property
    def complete(self) -> bool:
        """The upgrade did all it had to: every row promoted, archived and deleted."""
        exp = self.expected
        return (
            self.promoted == exp.promoted
            and self.archived == exp.archived
            and self.deleted == exp.deleted
        )

    @property
    def downgrade_swaps_back(self) -> bool:
        """The server's downgrade (ARCHIVED <-> CURRENT) restores what this upgrade archived
        and touches no other ARCHIVED row: every row it had to archive is ARCHIVED, and no
        other row is."""
        return bool(self.expected.archived) and (
            self.archived == self.expected.archived and not self.other_archived
        )

    def describe(self) -> str:
        """What was applied, in words."""
        exp = self.expected
        return (
            f"{len(self.promoted)}/{len(exp.promoted)} promoted, {len(self.archived)}/"
            f"{len(exp.archived)} archived, {len(self.deleted)}/{len(exp.deleted)} old "
            "ARCHIVED deleted"
        )


def upgrade_effect(expected: ExpectedState, now: IdSnapshot) -> UpgradeEffect:
    """Compare the server's ids now with what the upgrade had to do."""
    archived_now = set(now.archived)
    return UpgradeEffect(
        promoted=frozenset(expected.promoted & set(now.current)),
        archived=frozenset(expected.archived & archived_now),
        deleted=frozenset(expected.deleted - now.all_ids()),
        other_archived=frozenset(archived_now - expected.archived),
        expected=expected,
    )


@dataclass(frozen=True)
class RollbackPlan:
    """What to do, by id, to make the server's rows equal the backup again; `gone` are the
    saved rows that left for another reason than this run, which stay gone."""

    delete: frozenset[str]
    recreate: frozenset[str]
    gone: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        """Nothing left to repair."""
        return not self.delete and not self.recreate


def plan_rollback(
    backed_up: Mapping[str, Status],
    now: IdSnapshot,
    ours: Collection[str],
    deleted_by_run: Collection[str],
) -> RollbackPlan:
    """Compare the saved CURRENT/ARCHIVED rows (id -> status) with the server's rows;
    `ours` are the ids the run created (its candidate), `deleted_by_run` the saved rows
    this run deleted or tombstoned (only those are re-created when missing)."""
    present: dict[str, Status] = {}
    for status in ("current", "pending", "archived"):
        present.update(dict.fromkeys(now.of(status), status))
    delete = frozenset(i for i in present if i in ours and i not in backed_up)
    differ = {i for i, status in backed_up.items() if present.get(i) != status}
    gone = frozenset(i for i in differ if i not in present and i not in deleted_by_run)
    return RollbackPlan(delete=delete, recreate=frozenset(differ - gone), gone=gone)


def describe_residue(plan: RollbackPlan) -> str:
    """What still differs from the backup, in words ('' when nothing)."""
    parts = []
    if plan.delete:
        parts.append(
            f"{len(plan.delete)} row(s) this run created still there: {name_ids(plan.delete)}"
        )
    if plan.recreate:
        parts.append(
            f"{len(plan.recreate)} backed-up row(s) missing or with another status: "
            f"{name_ids(plan.recreate)}"
        )
    return "; ".join(parts)


def describe_gone(gone: Collection[str]) -> str:
    """The saved rows that left for another reason than this run ('' when none)."""
    if not gone:
        return ""
    return (
        f"{len(gone)} saved row(s) gone for another reason than this run (deleted by a user "
        f"or an erasure, expired, or superseded) stay gone, not re-created: {name_ids(gone)}"
    )


def playbooks_to_recreate(
    before: Sequence[Mapping[str, Any]], live_now: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """CURRENT playbooks listed before a rerun whose content no CURRENT row of that user has
    now: what H6 tombstoned and must be re-created to leave the server as it was."""
    current_now = {
        (r.get("user_id"), r.get("content"))
        for r in live_now
        if r.get("status") in (None, "current")
    }
    return [
        r
        for r in before
        if r.get("status") in (None, "current")
        and (r.get("user_id"), r.get("content")) not in current_now
    ]
