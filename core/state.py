"""Ids per status, what an upgrade must leave, and verification by identity.

An upgrade is checked id by id, never by counts: the rows it promoted are CURRENT, the rows
it archived are ARCHIVED, the CURRENT rows it had to spare are still CURRENT, and every row
that disappeared is in the backup.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.kinds import Kind, Status, row_status

SHOWN_IDS = 10
"""How many ids a message names before it says 'and N more'."""


@dataclass(frozen=True)
class Counts:
    """Rows per status (profiles, or one agent_version's user playbooks)."""

    current: int
    pending: int
    archived: int

    def as_dict(self) -> dict[str, int]:
        """{'current': .., 'pending': .., 'archived': ..}."""
        return {"current": self.current, "pending": self.pending, "archived": self.archived}


@dataclass
class IdSnapshot:
    """The ids of every row per status at one moment, with each row's user."""

    current: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    archived: dict[str, str] = field(default_factory=dict)

    def add(self, kind: Kind, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record a page of listed rows (tombstoned rows are not live and are skipped). A row
        already recorded is replaced: a later version of an id may be in another status."""
        tables = {"current": self.current, "pending": self.pending, "archived": self.archived}
        for row in rows:
            status = row_status(row)
            if status is not None:
                user = sys.intern(str(row.get("user_id")))
                row_id = kind.row_id(row)
                for other, table in tables.items():
                    if other != status:
                        table.pop(row_id, None)
                tables[status][row_id] = user

    def status_of(self, row_id: str) -> Status | None:
        """The status an id is recorded in; None when it is not."""
        for status in ("current", "pending", "archived"):
            if row_id in self.of(status):
                return status
        return None

    def discard(self, row_ids: Iterable[str]) -> None:
        """Forget these ids, whatever their status."""
        for row_id in row_ids:
            for table in (self.current, self.pending, self.archived):
                table.pop(row_id, None)

    def of(self, status: Status) -> dict[str, str]:
        """id -> user of one status."""
        return {"current": self.current, "pending": self.pending, "archived": self.archived}[status]

    def all_ids(self) -> set[str]:
        """Every live id, whatever its status."""
        return set(self.current) | set(self.pending) | set(self.archived)

    def counts(self) -> Counts:
        """Rows per status."""
        return Counts(len(self.current), len(self.pending), len(self.archived))


@dataclass(frozen=True)
class ExpectedState:
    """What an upgrade must leave, by id."""

    promoted: frozenset[str]
    current: frozenset[str]
    archived: frozenset[str]
    deleted: frozenset[str]

    def counts(self) -> Counts:
        """Rows per status once the upgrade is done."""
        return Counts(len(self.current), 0, len(self.archived))


def expected_after_upgrade(
    kind: Kind, before: IdSnapshot, only_affected_users: bool
) -> ExpectedState:
    """PENDING promoted; CURRENT archived (only the affected users' when the kind allows
    sparing the others); the old ARCHIVED rows deleted (H1: organisation-wide for profiles,
    the agent_version's for playbooks)."""
    promoted = frozenset(before.pending)
    if kind.upgrade_may_spare_unaffected_users and only_affected_users:
        affected = set(before.pending.values())
        archived = frozenset(i for i, user in before.current.items() if user in affected)
    else:
        archived = frozenset(before.current)
    kept = frozenset(before.current) - archived
    return ExpectedState(
        promoted=promoted,
        current=promoted | kept,
        archived=archived,
        deleted=frozenset(before.archived),
    )


class VerificationFailed(RuntimeError):
    """The server's rows after an upgrade are not the ones the upgrade had to leave."""


def name_ids(ids: Iterable[str]) -> str:
    """'a, b, c' for a few ids, 'a, b, ... and 990 more' for many (sorted, stable)."""
    ordered = sorted(ids)
    shown = ", ".join(ordered[:SHOWN_IDS])
    more = len(ordered) - SHOWN_IDS
    return f"{shown} and {more} more" if more > 0 else shown


VANISHED_ALLOWED = 10
VANISHED_SHARE = 0.01
"""How many rows may leave every status between the upgrade and its verification before
that counts as the upgrade's doing: at least VANISHED_ALLOWED, else this share of them."""


def vanished_ids(expected: ExpectedState, after: IdSnapshot) -> frozenset[str]:
    """Rows the upgrade had to leave in some status that are in none now: a user, the
    server's dedup or TTL expiry removed them meanwhile (on a live server, H16). Not the
    upgrade's doing, so not a reason to undo it; the upgrade's own deletions are not here."""
    kept = expected.promoted | expected.current | expected.archived
    return frozenset(kept - after.all_ids())


def id_problems(
    expected: ExpectedState,
    after: IdSnapshot,
    backed_up: frozenset[str] | set[str],
    known: frozenset[str] | None = None,
) -> list[str]:
    """Every way the server's ids differ from what the upgrade had to leave; empty when
    they match exactly. With `known` (every id before the upgrade), ids outside it are
    rows users created meanwhile, not differences; rows gone from every status
    (`vanished_ids`) were removed by others and are not differences either."""
    problems: list[str] = []
    removed = vanished_ids(expected, after)
    allowed = max(VANISHED_ALLOWED, int(VANISHED_SHARE * len(expected.current | expected.archived)))
    if len(removed) > allowed:
        problems.append(
            f"{len(removed)} row(s) gone from every status, more than the {allowed} a live server "
            f"removes during a run (users, dedup, expiry): {name_ids(removed)}"
        )
        removed = frozenset()

    def differ(label: str, want: frozenset[str], have: set[str]) -> None:
        want = want - removed
        missing, extra = want - have, have - want
        if known is not None:
            extra &= known
        if missing:
            problems.append(f"{len(missing)} id(s) not {label}: {name_ids(missing)}")
        if extra:
            problems.append(f"{len(extra)} unexpected {label} id(s): {name_ids(extra)}")

    unpromoted = expected.promoted - set(after.current) - removed
    if unpromoted:
        problems.append(f"{len(unpromoted)} row(s) not promoted: {name_ids(unpromoted)}")
    differ("CURRENT", expected.current - unpromoted, set(after.current) - unpromoted)
    differ("ARCHIVED", expected.archived, set(after.archived))
    if after.pending:
        problems.append(f"{len(after.pending)} row(s) still PENDING: {name_ids(after.pending)}")
    before_ids = expected.current | expected.archived | expected.deleted
    gone = before_ids - after.all_ids() - removed
    lost = gone - set(backed_up)
    if lost:
        problems.append(f"{len(lost)} row(s) gone and NOT in the backup: {name_ids(lost)}")
    return problems


def verify_ids(
    expected: ExpectedState,
    after: IdSnapshot,
    backed_up: frozenset[str] | set[str],
    known: frozenset[str] | None = None,
) -> None:
    """Raise VerificationFailed naming every id that is not where the upgrade had to put it
    (ids outside `known`, when given, are rows users created meanwhile)."""
    problems = id_problems(expected, after, backed_up, known)
    if problems:
        raise VerificationFailed("Post-upgrade verification failed: " + "; ".join(problems) + ".")
