"""Clear users' data and prove that nothing of theirs remains.

`clear_user_data` alone is not enough on reflexio-ai 0.2.32 (H9): after a playbook rerun
merged a user's playbook, the CURRENT survivor is anonymised (user_id null, content
emptied) instead of deleted. It can no longer be found by user_id, so it is recognised by
its id: every profile and user-playbook id listed for the user BEFORE clearing that still
exists afterwards is a leftover; leftovers are reported and deleted by id.

Listings are organisation-wide (one complete, paged listing per status, not one per user)
to stay far below get_all_profiles' 30/min limit; clear_user_data calls (10/min, H11) are
paced through a Prefect rate limit shared by every process (tasks/pacing.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

from deployments.catalogue import PACED_ROUTES
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.pacing import paced_call, pacer_for, spacing_for
from tasks.retry import retry_options
from tasks.server import DELETE_BATCH, in_batches

PROFILE_STATUSES = ("current", "pending", "archived")
CLEAR_CALLS_PER_MINUTE = PACED_ROUTES["clear_user_data"]


class Listed(TypedDict):
    """One user's rows as listed before clearing: what identifies H9's anonymised leftovers."""

    profiles: list[str]
    playbooks: list[int]


@dataclass
class Inventory:
    """Rows by id across the organisation: profiles id -> user, playbooks id -> user."""

    profiles: dict[str, str | None] = field(default_factory=dict)
    playbooks: dict[int, str | None] = field(default_factory=dict)

    def profile_ids_of(self, user: str) -> set[str]:
        return {i for i, u in self.profiles.items() if u == user}

    def playbook_ids_of(self, user: str) -> set[int]:
        return {i for i, u in self.playbooks.items() if u == user}

    def listed(self, users: list[str]) -> dict[str, Listed]:
        """These users' rows, for the run journal (a run that dies after clearing a user
        leaves rows the server anonymised, H9, that no later listing can tell as theirs)."""
        return {
            u: Listed(
                profiles=sorted(self.profile_ids_of(u)), playbooks=sorted(self.playbook_ids_of(u))
            )
            for u in users
        }

    def with_listed(self, listed: Mapping[str, Listed]) -> Inventory:
        """This inventory with the rows an earlier run listed as a user's, and that are now
        anonymised (user_id null), counted as that user's again."""
        profiles, playbooks = dict(self.profiles), dict(self.playbooks)
        for user, rows in listed.items():
            profiles |= {i: user for i in rows["profiles"] if i in profiles and not profiles[i]}
            playbooks |= {i: user for i in rows["playbooks"] if i in playbooks and not playbooks[i]}
        return replace(self, profiles=profiles, playbooks=playbooks)


@task(name="inventory-rows", cache_policy=NO_CACHE, **retry_options())
def inventory(settings: ReflexioSettings) -> Inventory:
    """Every profile (three statuses) and every live user playbook, by id."""
    found = Inventory()
    with ReflexioClient(settings) as client:
        for status in PROFILE_STATUSES:
            for row in client.list_profiles(status):  # type: ignore[arg-type]
                found.profiles[row.profile_id] = row.user_id
        for pb in client.list_user_playbooks():
            found.playbooks[pb.user_playbook_id] = pb.user_id
    return found


@task(name="clear-user-data", cache_policy=NO_CACHE, **retry_options())
def clear_user(settings: ReflexioSettings, user_id: str) -> dict[str, int]:
    """POST /api/clear_user_data (idempotent: a second clear deletes nothing), paced."""
    pacer = pacer_for(settings.url, "clear_user_data", spacing_for(CLEAR_CALLS_PER_MINUTE))
    with ReflexioClient(settings) as client:
        done = paced_call(pacer, lambda: client.clear_user_data(user_id))
    return dict(done.result.deleted_counts)


@task(name="delete-leftovers", cache_policy=NO_CACHE, **retry_options())
def delete_leftovers(
    settings: ReflexioSettings, profile_ids: list[str], playbook_ids: list[int]
) -> dict[str, int]:
    """Delete by id (idempotent), DELETE_BATCH ids a request (one user may have any number)."""
    deleted = {"profiles": 0, "user_playbooks": 0}
    with ReflexioClient(settings) as client:
        for batch in in_batches(profile_ids, DELETE_BATCH):
            deleted["profiles"] += client.delete_profiles(batch).deleted_count
        for ids in in_batches(playbook_ids, DELETE_BATCH):
            deleted["user_playbooks"] += client.delete_user_playbooks(ids).deleted_count
    return deleted


@dataclass
class UserReport:
    """One user's before/cleared/leftover/after counts."""

    user_id: str
    profiles_before: int = 0
    playbooks_before: int = 0
    server_deleted: dict[str, int] = field(default_factory=dict)
    leftover_profiles: list[str] = field(default_factory=list)
    leftover_playbooks: list[int] = field(default_factory=list)
    anonymised: int = 0
    remaining_after: int = 0

    def row(self) -> dict[str, Any]:
        counts = self.server_deleted
        return {
            "user_id": self.user_id,
            "profiles_before": self.profiles_before,
            "user_playbooks_before": self.playbooks_before,
            "server_deleted_interactions": counts.get("interactions", 0),
            "server_deleted_profiles": counts.get("profiles", 0),
            "server_deleted_user_playbooks": counts.get("user_playbooks", 0),
            "leftover_profiles": len(self.leftover_profiles),
            "leftover_user_playbooks": len(self.leftover_playbooks),
            "anonymised_leftovers (H9)": self.anonymised,
            "remaining_after": self.remaining_after,
        }


def find_leftovers(before: Inventory, after: Inventory, report: UserReport) -> None:
    """Rows that were the user's before clearing and still exist (any user_id now)."""
    profile_ids = before.profile_ids_of(report.user_id)
    playbook_ids = before.playbook_ids_of(report.user_id)
    report.leftover_profiles = sorted(
        (profile_ids & after.profiles.keys()) | after.profile_ids_of(report.user_id)
    )
    report.leftover_playbooks = sorted(
        (playbook_ids & after.playbooks.keys()) | after.playbook_ids_of(report.user_id)
    )
    report.anonymised = sum(
        1 for i in report.leftover_profiles if after.profiles.get(i) is None
    ) + sum(1 for i in report.leftover_playbooks if after.playbooks.get(i) is None)


def remaining(final: Inventory, before: Inventory, user_id: str) -> int:
    """Rows of the user (by user_id, or by an id that was theirs) still present."""
    profiles = (before.profile_ids_of(user_id) & final.profiles.keys()) | final.profile_ids_of(
        user_id
    )
    playbooks = (before.playbook_ids_of(user_id) & final.playbooks.keys()) | final.playbook_ids_of(
        user_id
    )
    return len(profiles) + len(playbooks)
