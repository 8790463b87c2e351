"""The server calls of one kind: the one place profiles and user playbooks part.

Everything else that differs between them is data (core/kinds.py). `calls_for` picks the
adapter once per kind; tasks/ops.py's `PrefectOps` and `read_rows` go through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.kinds import Kind, Status
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.server import (
    add_profiles,
    add_user_playbooks,
    delete_profiles_in_batches,
    delete_user_playbooks_in_batches,
    downgrade_profiles,
    downgrade_user_playbooks,
    run_playbook_aggregation,
    start_playbook_rerun,
    start_profile_rerun,
    upgrade_profiles,
    upgrade_user_playbooks,
)


class KindCalls(Protocol):
    """The server calls that differ between kinds, on one server."""

    def listings(self, statuses: Sequence[Status]) -> Sequence[Status | None]:
        """The listings that read `statuses` (None: one listing of every status)."""
        ...

    def listed(
        self, client: ReflexioClient, status: Status | None, page_size: int, expected: int | None
    ) -> Iterator[Sequence[Any]]:
        """One listing's pages, read with `client`."""
        ...

    def delete(self, ids: Iterable[str]) -> int: ...
    def start_rerun(
        self, source: str | None, start: datetime | None, end: datetime | None
    ) -> str: ...
    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]: ...
    def downgrade(self, only_affected_users: bool) -> dict[str, Any]: ...
    def add(self, rows: list[dict[str, Any]]) -> int: ...
    def aggregate(self) -> str: ...


@dataclass(frozen=True)
class ProfileCalls:
    """Profiles: listed one status at a time (each counted by the server), re-created
    with their ids."""

    settings: ReflexioSettings

    def listings(self, statuses: Sequence[Status]) -> Sequence[Status | None]:
        return statuses

    def listed(
        self, client: ReflexioClient, status: Status | None, page_size: int, expected: int | None
    ) -> Iterator[Sequence[Any]]:
        assert status is not None  # one listing per status (listings)
        return client.iter_profiles(status, page_size=page_size, expected_total=expected)

    def delete(self, ids: Iterable[str]) -> int:
        return delete_profiles_in_batches(self.settings, sorted(ids))

    def start_rerun(self, source: str | None, start: datetime | None, end: datetime | None) -> str:
        return start_profile_rerun(self.settings, source, start, end)

    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]:
        return upgrade_profiles(self.settings, only_affected_users, pending_before)

    def downgrade(self, only_affected_users: bool) -> dict[str, Any]:
        return downgrade_profiles(self.settings, only_affected_users)

    def add(self, rows: list[dict[str, Any]]) -> int:
        return add_profiles(self.settings, rows)

    def aggregate(self) -> str:
        raise TypeError("Profiles have no aggregation; only user playbooks are aggregated.")


@dataclass(frozen=True)
class PlaybookCalls:
    """One agent_version's user playbooks: every status in one listing, re-created with
    new ids, aggregated after an upgrade."""

    settings: ReflexioSettings
    agent_version: str

    def listings(self, statuses: Sequence[Status]) -> Sequence[Status | None]:
        return statuses if len(statuses) == 1 else (None,)

    def listed(
        self, client: ReflexioClient, status: Status | None, page_size: int, expected: int | None
    ) -> Iterator[Sequence[Any]]:
        return client.iter_user_playbooks(status=status, agent_version=self.agent_version)

    def delete(self, ids: Iterable[str]) -> int:
        return delete_user_playbooks_in_batches(self.settings, sorted(int(i) for i in ids))

    def start_rerun(self, source: str | None, start: datetime | None, end: datetime | None) -> str:
        return start_playbook_rerun(self.settings, self.agent_version, source, start, end)

    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]:
        return upgrade_user_playbooks(self.settings, self.agent_version, pending_before)

    def downgrade(self, only_affected_users: bool) -> dict[str, Any]:
        return downgrade_user_playbooks(self.settings, self.agent_version)

    def add(self, rows: list[dict[str, Any]]) -> int:
        return add_user_playbooks(self.settings, rows)

    def aggregate(self) -> str:
        return run_playbook_aggregation(self.settings, self.agent_version)


def calls_for(kind: Kind, settings: ReflexioSettings) -> KindCalls:
    """The server calls of `kind` on the server of `settings`."""
    if kind.name == "profiles":
        return ProfileCalls(settings)
    assert kind.agent_version is not None
    return PlaybookCalls(settings, kind.agent_version)
