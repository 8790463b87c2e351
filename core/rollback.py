"""Rolling an upgrade back to the backup, id by id.

After the server's own downgrade (which swaps CURRENT and ARCHIVED back), what still
differs from the state before the upgrade is repaired by id: rows the run created (what the
upgrade promoted) are deleted, and saved rows that are missing (the old ARCHIVED rows the
upgrade deleted, H1) or have another status are re-created from the backup file. Rows
nobody saved (users created them after the upgrade) are not the rollback's to delete.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.kinds import Status
from core.state import IdSnapshot, name_ids


@dataclass(frozen=True)
class RollbackPlan:
    """What to do, by id, to make the server's rows equal the backup again."""

    delete: frozenset[str]
    recreate: frozenset[str]

    @property
    def empty(self) -> bool:
        """Nothing left to repair."""
        return not self.delete and not self.recreate


def plan_rollback(
    backed_up: Mapping[str, Status], now: IdSnapshot, ours: Collection[str]
) -> RollbackPlan:
    """Compare the saved CURRENT/ARCHIVED rows (id -> status) with the server's rows;
    `ours` are the ids the run created (its candidate)."""
    present: dict[str, Status] = {}
    for status in ("current", "pending", "archived"):
        present.update(dict.fromkeys(now.of(status), status))
    delete = frozenset(i for i in present if i in ours and i not in backed_up)
    recreate = frozenset(i for i, status in backed_up.items() if present.get(i) != status)
    return RollbackPlan(delete=delete, recreate=recreate)


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
