"""What a profile restore does, decided before anything is written (no Prefect, no HTTP).

Inputs: the backup's rows (streamed once), the server's rows (id -> status, digest and
user), the ids the backed-up run changed (its touched-ids file; None when there is none) and
the users erased after the backup was written. Every row gets one action:

- re-create: a backed-up CURRENT or ARCHIVED row the server lacks that the touched-ids file
  says the run's upgrade deleted (the old ARCHIVED rows, H1), unless its user has no row at
  all on the server any more (see gone). Without a touched-ids file (only when the operator
  accepted it, recreate_missing) every missing backed-up row is re-created;
- re-status: a row the run changed and that is still there, written back as it was backed
  up, same id (the CURRENT rows it archived become CURRENT again; a row it promoted from a
  backed-up PENDING row becomes PENDING again). Without a touched-ids file the run's changes
  cannot be told apart: every backed-up CURRENT or ARCHIVED row the server holds
  differently is written back;
- undo: a row the run promoted that the backup lacks (the run's new generation): deleted;
- newer: a CURRENT or ARCHIVED row neither in the backup nor promoted by the run, learned
  since: kept, deleted only on request (delete_newer);
- kept: a backed-up row that something other than the run changed since: left as it is;
- gone: a backed-up CURRENT or ARCHIVED row the server lacks for any reason other than the
  run's upgrade (a user deleted it, TTL expired it, dedup superseded it, an erasure through
  the API took it): never re-created. So are the rows the run deleted of a user who has no
  row left on the server although the backup holds rows of theirs the run did not delete
  (erased or deleted outside this tool): those users are named;
- erased: every backed-up row of a user clear-user-data erased after the backup: not
  restored.

PENDING rows on the server are never deleted, and backed-up PENDING rows are not re-created.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from core.kinds import PROFILE_KEYS, Status, comparable, row_status
from core.state import name_ids

SHOWN_USERS = 5
"""How many erased users a message names before it says 'and N more'."""


class RestoreInputError(ValueError):
    """A restore's input does not fit (wrong backup, bad touched-ids file); nothing written."""


class OnServer(NamedTuple):
    """What a restore compares of one server row."""

    status: Status
    digest: bytes
    user: str | None = None


def row_digest(row: Mapping[str, Any]) -> bytes:
    """A digest of PROFILE_KEYS as `comparable` reads them: equal rows, equal digests."""
    (key,) = comparable([row], PROFILE_KEYS)
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()


def on_server(rows: Iterable[Mapping[str, Any]]) -> dict[str, OnServer]:
    """Listed profile rows as id -> OnServer (tombstoned rows are skipped)."""
    held: dict[str, OnServer] = {}
    for row in rows:
        status = row_status(row)
        if status is not None:
            held[row["profile_id"]] = OnServer(status, row_digest(row), row.get("user_id"))
    return held


@dataclass(frozen=True)
class RunChanges:
    """The ids the backed-up run's upgrade promoted, archived and deleted."""

    promoted: frozenset[str]
    archived: frozenset[str]
    deleted: frozenset[str]

    @classmethod
    def parse(cls, document: object, source: str) -> RunChanges:
        """From a touched-ids document; RestoreInputError when it is not one."""
        names = ("promoted", "archived", "deleted")
        if not isinstance(document, dict) or not all(
            isinstance(document.get(n), list) and all(isinstance(i, str) for i in document[n])
            for n in names
        ):
            raise RestoreInputError(
                f"{source} is not a touched-ids file (expected lists of ids under {names}). "
                "Put back the file the run wrote, or move it away to "
                "restore without it (rows not in the backup then count as newer)."
            )
        return cls(*(frozenset(document[n]) for n in names))

    @property
    def changed(self) -> frozenset[str]:
        """Every id the run's upgrade changed."""
        return self.promoted | self.archived | self.deleted


@dataclass
class RestorePlan:
    """The ids of every action, and what is skipped."""

    recreate: set[str] = field(default_factory=set)
    restatus: set[str] = field(default_factory=set)
    undo: set[str] = field(default_factory=set)
    newer: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    gone_users: set[str] = field(default_factory=set)
    """Users with no row left on the server whose rows the run deleted are in `gone`."""
    erased_rows: int = 0
    erased_users: set[str] = field(default_factory=set)
    pending_left: int = 0

    @property
    def write(self) -> set[str]:
        """The backed-up rows to write as they were backed up."""
        return self.recreate | self.restatus

    def counts(self) -> dict[str, int]:
        """Rows per action."""
        return {
            "re-create": len(self.recreate),
            "re-status": len(self.restatus),
            "undo promoted": len(self.undo),
            "newer": len(self.newer),
            "kept changed": len(self.kept),
            "gone since backup": len(self.gone),
            "erased rows": self.erased_rows,
            "erased users": len(self.erased_users),
            "pending left": self.pending_left,
        }


def plan_restore(
    backup_rows: Iterable[Mapping[str, Any]],
    server: Mapping[str, OnServer],
    run: RunChanges | None,
    erased: Collection[str],
) -> RestorePlan:
    """One pass over the backup against the server's rows; see the module docstring."""
    plan = RestorePlan()
    backed: set[str] = set()
    deleted_by_run: dict[str, str | None] = {}
    expected_users: set[str | None] = set()
    changed = run.changed if run is not None else None  # a union: once, not once a row
    for row in backup_rows:
        pid, status, user = row["profile_id"], row_status(row), row.get("user_id")
        backed.add(pid)
        if user in erased:
            if status != "pending":
                plan.erased_rows += 1
                plan.erased_users.add(user)
            continue
        here = server.get(pid)
        by_run = pid in changed if changed is not None else status != "pending"
        if run is not None and status != "pending" and pid not in run.deleted:
            expected_users.add(user)  # the run left this row on the server
        if status == "pending" and (here is None or not by_run):
            plan.pending_left += 1
        elif here is not None and here.digest == row_digest(row):
            continue
        elif here is None and run is not None and pid in run.deleted:
            deleted_by_run[pid] = user
        elif here is None:
            (plan.recreate if run is None else plan.gone).add(pid)
        elif by_run:
            plan.restatus.add(pid)
        else:
            plan.kept.add(pid)
    if run is not None and not run.archived | run.deleted <= backed:
        strays = (run.archived | run.deleted) - backed
        raise RestoreInputError(
            f"The touched-ids file names {len(strays)} archived or deleted row(s) the backup "
            f"does not hold ({name_ids(strays)}): it belongs to another backup. Put back the "
            "file written beside this backup, or move it away."
        )
    present_users = {here.user for here in server.values()}
    for pid, user in deleted_by_run.items():
        if user in expected_users and user not in present_users:
            plan.gone.add(pid)
            plan.gone_users.add(user)  # type: ignore[arg-type]
        else:
            plan.recreate.add(pid)
    for pid, here in server.items():
        if pid in backed or here.status == "pending":
            continue
        (plan.undo if run is not None and pid in run.promoted else plan.newer).add(pid)
    return plan


def restore_problems(
    before: RestorePlan, after: RestorePlan, present: Collection[str], deleted_newer: bool
) -> list[str]:
    """Every way the server, re-planned after the writes, differs from what the restore had
    to leave; empty when it is right, id by id."""
    problems = []
    if after.recreate:
        problems.append(f"{len(after.recreate)} row(s) still missing: {name_ids(after.recreate)}")
    if after.restatus:
        problems.append(
            f"{len(after.restatus)} row(s) still not as backed up: {name_ids(after.restatus)}"
        )
    gone = before.undo | (before.newer if deleted_newer else set())
    left = gone & set(present)
    if left:
        problems.append(f"{len(left)} row(s) still present after deletion: {name_ids(left)}")
    back = before.gone & set(present)
    if back:
        problems.append(
            f"{len(back)} row(s) gone since the backup are back on the server: {name_ids(back)}"
        )
    lost = set() if deleted_newer else before.newer - set(present)
    if lost:
        problems.append(f"{len(lost)} newer row(s) that had to be kept are gone: {name_ids(lost)}")
    return problems


def name_users(users: Collection[str]) -> str:
    """'a, b' for a few users, 'a, b, ... and 7 more' for many (sorted)."""
    ordered = sorted(users)
    shown = ", ".join(ordered[:SHOWN_USERS])
    more = len(ordered) - SHOWN_USERS
    return f"{shown} and {more} more" if more > 0 else shown
