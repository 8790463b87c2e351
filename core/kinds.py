"""What a regeneration works on: profiles, or one agent_version's user playbooks.

The engine runs the same phases for both; every difference between them is data here,
but for the server calls that read and write them (tasks/kind_calls.py, one small adapter
per kind).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.identity import server_slug

Status = Literal["current", "pending", "archived"]
STATUSES: tuple[Status, ...] = ("current", "pending", "archived")


@dataclass(frozen=True)
class Kind:
    """One kind of regenerated rows and how the server treats them."""

    name: Literal["profiles", "user_playbooks"]
    gate_kind: Literal["profiles", "playbooks"]
    id_field: str
    timestamp_field: str
    """The epoch second listings order and window on (and a live row's 'since')."""
    service: Literal["profile_generation", "playbook_generation"]
    agent_version: str | None
    rerun_tombstones_current: bool
    """H6: a rerun marks the CURRENT rows it re-derives 'merged' before any upgrade."""
    rerun_clears_pending: bool
    """A rerun deletes the kind's PENDING rows before it writes its own (playbooks, not
    profiles: H5)."""
    candidate_deleted_when_not_upgraded: bool
    """Deleting a refused candidate is safe (profiles); for playbooks it would strand the
    users whose CURRENT rows the rerun tombstoned (H6), so their candidate is kept."""
    upgrade_may_spare_unaffected_users: bool
    """Profiles' only_affected_users: CURRENT rows of users without PENDING rows stay."""
    counted_by_server: bool
    """get_profile_statistics counts this kind, so a listing can be proven by counts."""
    recreate_keeps_ids: bool
    """add_user_profiles stores a row with its id; add_user_playbook assigns a new one."""
    label: str
    """Words for messages, e.g. 'profiles' or 'user playbooks of v1'."""
    artifact_stem: str
    """The start of a run's artifact keys, e.g. 'profile-regen' or 'playbook-regen-v1'."""

    def artifact_prefix(self, url: str) -> str:
        """Artifact keys of a run, e.g. 'profile-regen-127-0-0-1-8081'."""
        return f"{self.artifact_stem}-{server_slug(url)}"

    def row_id(self, row: Mapping[str, Any]) -> str:
        """A row's id as text (user playbook ids are integers on the server)."""
        return str(row[self.id_field])

    def timestamp(self, row: Mapping[str, Any]) -> int | None:
        """A row's timestamp in epoch seconds, None when it has none."""
        value = row.get(self.timestamp_field)
        return int(value) if isinstance(value, int | float) else None

    def server_id(self, row_id: str) -> str | int:
        """An id as the server wants it back."""
        return row_id if self.name == "profiles" else int(row_id)


PROFILES = Kind(
    name="profiles",
    gate_kind="profiles",
    id_field="profile_id",
    timestamp_field="last_modified_timestamp",
    service="profile_generation",
    agent_version=None,
    rerun_tombstones_current=False,
    rerun_clears_pending=False,
    candidate_deleted_when_not_upgraded=True,
    upgrade_may_spare_unaffected_users=True,
    counted_by_server=True,
    recreate_keeps_ids=True,
    label="profiles",
    artifact_stem="profile-regen",
)


def user_playbooks(agent_version: str) -> Kind:
    """The kind of one agent_version's user playbooks."""
    version = "".join(c if c.isalnum() else "-" for c in agent_version.lower())
    return Kind(
        name="user_playbooks",
        gate_kind="playbooks",
        id_field="user_playbook_id",
        timestamp_field="created_at",
        service="playbook_generation",
        agent_version=agent_version,
        rerun_tombstones_current=True,
        rerun_clears_pending=True,
        candidate_deleted_when_not_upgraded=False,
        upgrade_may_spare_unaffected_users=False,
        counted_by_server=False,
        recreate_keeps_ids=False,
        label=f"user playbooks of {agent_version}",
        artifact_stem=f"playbook-regen-{version}",
    )


def row_status(row: Mapping[str, Any]) -> Status | None:
    """A listed row's status: CURRENT rows carry none; tombstones ('merged', ...) are None."""
    status = row.get("status")
    if status in (None, "current"):
        return "current"
    return status if status in ("pending", "archived") else None


PROFILE_KEYS = ("profile_id", "user_id", "content", "status", "source")
PLAYBOOK_KEYS = ("user_playbook_id", "user_id", "content", "status", "agent_version")


def comparable(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[tuple[str, ...]]:
    """Rows reduced to `keys`, sorted: to compare a backup with what the server holds."""
    return sorted(tuple(str(r.get(k)) for k in keys) for r in rows)
