"""An in-memory Reflexio server behind the engine's ServerOps, for fast flow-branch tests.

It implements what the engine relies on as reflexio-ai 0.2.32 does it: reruns add PENDING
rows (a playbook rerun also tombstones the CURRENT rows of the users it re-derives, H6);
the upgrade deletes every ARCHIVED row (H1), archives CURRENT (only the affected users'
with only_affected_users, profiles only) and promotes PENDING; the downgrade swaps CURRENT
and ARCHIVED; re-created profiles keep their ids, re-created playbooks get new ones.
Listings, backups and frames go through the real core code (`consume`). Faults are
switched on by attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.approval import Approval
from core.backup_store import BackupStore, open_store, split_location
from core.journal import RunJournal
from core.kinds import Kind, row_status
from core.sinks import Reading, ReadRequest, consume
from core.stall import Stall
from core.upgrade import UpgradeUndetermined
from gate import GatePolicy, GateReport, RunScope, evaluate, with_scope
from reflexio_api import OperationTimeout, ServerReportedFailure, TransientError
from reflexio_api.models import OperationStatus

FAR_FUTURE = 4_102_444_800
PAGE = 7
RERUN_STARTED_AT = 1_800_000_000
"""When the fake's reruns start: seeded rows are older, rows users add 'during' are not."""
BACKUPS_WRITTEN_AT = datetime.fromtimestamp(RERUN_STARTED_AT - 60, UTC)
"""The one instant `freeze_backup_clock` gives every backup a run writes."""


def freeze_backup_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stamp every backup at BACKUPS_WRITTEN_AT instead of the wall clock.

    A backup's name carries the UTC second it was started (core/backup.py), so a run's live
    part is `<stem>-live` of its main backup only when both start in the same second; on the
    wall clock that depends on where a second boundary falls. Frozen, it always holds."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return BACKUPS_WRITTEN_AT if tz is not None else BACKUPS_WRITTEN_AT.replace(tzinfo=None)

    monkeypatch.setattr("core.backup.datetime", Frozen)


def profile(pid: str, user: str, content: str, status: str | None = None, source="chat"):
    """A profile row as the server lists it."""
    return {
        "profile_id": pid,
        "user_id": user,
        "content": content,
        "source": source,
        "generated_from_request_id": f"req-{user}",
        "status": status,
        "last_modified_timestamp": 1_700_000_000,
        "expiration_timestamp": FAR_FUTURE,
    }


def playbook(pid: int, user: str, content: str, status: str | None = None, av: str = "v1"):
    """A user playbook row as the server lists it."""
    return {
        "user_playbook_id": pid,
        "user_id": user,
        "content": content,
        "trigger": f"when {content}",
        "source": "chat",
        "request_id": f"req-{user}",
        "agent_version": av,
        "status": status,
    }


Rerun = Callable[["FakeOps"], list[dict[str, Any]]]


@dataclass
class FakeOps:
    """ServerOps over rows in memory; `calls` records every effect in order."""

    kind: Kind
    rows: dict[str, dict[str, Any]]
    rerun_output: Rerun
    url: str = "http://127.0.0.1:9"
    stall: Stall | None = None
    rerun_status: str = "completed"
    upgrade_skips: set[str] = field(default_factory=set)
    """Ids of PENDING rows the upgrade leaves PENDING (a server that did not promote them)."""
    upgrade_raises: bool = False
    """The upgrade applies, then answers with an error."""
    upgrade_refused: bool = False
    """The upgrade never reaches the server (a gateway answers 503 to every try)."""
    upgrade_fails_after: int | None = None
    """The upgrade deletes the old ARCHIVED rows, archives this many CURRENT rows, then
    fails (promotes nothing) and answers with an error."""
    upgrade_lost: UpgradeUndetermined | None = None
    """The upgrade's answer was lost and the state did not settle (nothing applied)."""
    downgrade_raises: bool = False
    during_rerun: Callable[[], None] | None = None
    """Runs once the rerun has written its rows, before it ends (live traffic, H14)."""
    before_upgrade: Callable[[], None] | None = None
    """Runs when the upgrade is called, before it applies (e.g. a user's row lands)."""
    after_upgrade: Callable[[], None] | None = None
    """Runs once the upgrade applied, before it answers (e.g. the run is killed)."""
    users_processed: int | None = None
    """The users the rerun reports it processed; default: the users it wrote rows for."""
    rerun_users: int = 0
    gate_baseline: set[str] = field(default_factory=set)
    """The ids of the rows the gate compared the candidate with."""
    recreate_failures: int = 0
    """How many re-create calls fail (the server refuses) before they work again."""
    wait_times_out: bool = False
    """The rerun outlives the engine's wait (it has written its rows by then)."""
    running: str | None = None
    """The id of a rerun the server reports in progress."""
    read_raises: Exception | None = None
    read_fails: dict[int, Exception] = field(default_factory=dict)
    """Read number (1 = the first read) -> the error that read raises (once)."""
    answer: Approval | None = None
    """The operator's scripted answer; None: asking is a test failure."""
    during_approval: Callable[[], None] | None = None
    """Runs while the run waits for the answer (users keep talking)."""
    asked: list[tuple[str, int]] = field(default_factory=list)
    """Every approval request: its Markdown and timeout."""
    calls: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _ids: count = field(default_factory=lambda: count(10_000))

    def _live(self, row: dict[str, Any]) -> bool:
        return row_status(row) is not None

    def check_stall(self) -> tuple[Stall | None, str]:
        self.calls.append("check_stall")
        return self.stall, "notified" if self.stall else ""

    def refuse_if_running(self) -> None:
        self.calls.append("refuse_if_running")

    def running_operation(self) -> str | None:
        self.calls.append("running_operation")
        return self.running

    def read(self, request: ReadRequest) -> Reading:
        self.calls.append(f"read:{','.join(request.statuses)}")
        if self.read_raises is not None:
            raise self.read_raises
        reads = sum(c.startswith("read:") for c in self.calls)
        if reads in self.read_fails:
            raise self.read_fails.pop(reads)
        rows = [
            dict(r)
            for _, r in sorted(self.rows.items())
            if self._live(r) and row_status(r) in request.statuses
        ]
        pages = [rows[i : i + PAGE] for i in range(0, len(rows), PAGE)]
        return consume(self.kind, pages, request)

    def delete(self, ids: Collection[str]) -> int:
        self.calls.append(f"delete:{len(ids)}")
        return sum(self.rows.pop(i, None) is not None for i in list(ids))

    def start_rerun(
        self, source: str | None, start_time: datetime | None, end_time: datetime | None
    ) -> str:
        self.calls.append(f"rerun:{source}")
        if self.kind.rerun_clears_pending:
            for i in [i for i, r in self.rows.items() if r.get("status") == "pending"]:
                del self.rows[i]
        output = self.rerun_output(self)
        self.rerun_users = len({row["user_id"] for row in output})
        for row in output:
            if self.kind.rerun_tombstones_current:
                for old in self.rows.values():
                    if old["user_id"] == row["user_id"] and old.get("status") is None:
                        old["status"] = "merged"
            self.rows[self.kind.row_id(row)] = row
        if self.during_rerun is not None:
            self.during_rerun()
        return "op-1"

    def wait(self, operation_id: str, timeout_s: float, artifact_key: str) -> OperationStatus:
        self.calls.append("wait")
        if self.wait_times_out:
            raise OperationTimeout(f"{operation_id} still running after {timeout_s:g} s")
        return OperationStatus.model_validate(
            {
                "service_name": self.kind.service,
                "status": self.rerun_status,
                "started_at": RERUN_STARTED_AT,
                "total_users": self.processed_users,
                "processed_users": self.processed_users,
                "failed_users": 0 if self.rerun_status == "completed" else 2,
                "stats": {"total_generated": 1},
                "request_params": {"operation_id": operation_id},
            }
        )

    @property
    def processed_users(self) -> int:
        """What the rerun reports it processed."""
        return self.rerun_users if self.users_processed is None else self.users_processed

    def cancel_rerun(self, operation_id: str) -> str:
        self.calls.append("cancel_rerun")
        self.running = None
        return "it was cancelled and ended cancelled"

    def report_inferred_stall(self, stall: Stall) -> str:
        self.calls.append("report_inferred_stall")
        return "notified"

    def clear_inferred_stall(self) -> None:
        self.calls.append("clear_inferred_stall")

    def gate(
        self,
        candidate: pd.DataFrame,
        baseline: pd.DataFrame,
        policy: GatePolicy,
        artifact_prefix: str,
        dask_address: str | None,
        scope: RunScope | None,
    ) -> GateReport:
        self.calls.append("gate")
        self.gate_baseline = set(baseline["row_id"])
        report = evaluate(candidate, baseline, policy=policy, kind=self.kind.gate_kind)
        return with_scope(report, candidate, baseline, scope)

    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]:
        self.calls.append("upgrade")
        if self.before_upgrade is not None:
            self.before_upgrade()
        if self.upgrade_lost is not None:
            raise self.upgrade_lost
        if self.upgrade_refused:
            raise TransientError("upgrade: 503 Service Unavailable from the gateway")
        pending = {i: r for i, r in self.rows.items() if r.get("status") == "pending"}
        affected = {r["user_id"] for r in pending.values()}
        spare = self.kind.upgrade_may_spare_unaffected_users and only_affected_users
        for i in [i for i, r in self.rows.items() if r.get("status") == "archived"]:
            del self.rows[i]
        archived = 0
        for row in self.rows.values():
            if row.get("status") is None and (not spare or row["user_id"] in affected):
                if archived == self.upgrade_fails_after:
                    raise ServerReportedFailure("upgrade: disk I/O error", server_message="io")
                row["status"] = "archived"
                archived += 1
        for i, row in pending.items():
            if i not in self.upgrade_skips:
                row["status"] = None
        if self.after_upgrade is not None:
            self.after_upgrade()
        if self.upgrade_raises:
            raise ServerReportedFailure("upgrade answer: boom", server_message="boom")
        return {"message": f"Upgraded: {len(pending)} promoted"}

    def downgrade(self, only_affected_users: bool) -> dict[str, Any]:
        self.calls.append("downgrade")
        if self.downgrade_raises:
            raise ServerReportedFailure("downgrade refused", server_message="refused")
        for row in self.rows.values():
            status = row.get("status")
            if status is None:
                row["status"] = "archived"
            elif status == "archived":
                row["status"] = None
        return {"message": "Downgraded"}

    def recreate(self, rows: Iterable[dict[str, Any]]) -> int:
        rows = list(rows)
        self.calls.append(f"recreate:{len(rows)}")
        if self.recreate_failures:
            self.recreate_failures -= 1
            raise ServerReportedFailure("add refused", server_message="refused")
        for row in rows:
            if self.kind.recreate_keeps_ids:
                self.rows[self.kind.row_id(row)] = dict(row)
            else:
                new_id = next(self._ids)
                self.rows[str(new_id)] = {
                    **row,
                    self.kind.id_field: new_id,
                    "status": None,
                }
        return len(rows)

    def aggregate(self) -> str:
        self.calls.append("aggregate")
        return "Skipped: not enough new playbooks"

    def notify(self, subject: str, body: str) -> None:
        self.calls.append("notify")
        self.notes.append(subject)

    def ask_approval(self, request_markdown: str, timeout_s: int) -> Approval:
        self.calls.append("ask_approval")
        self.asked.append((request_markdown, timeout_s))
        assert self.answer is not None, "the engine asked for approval; no answer scripted"
        if self.during_approval is not None:
            self.during_approval()
        return self.answer

    def emit(self, event: str, **payload: Any) -> None:
        self.events.append((event, payload))

    def open_location(self, location: str | Path) -> BackupStore:
        return open_store(location)

    def locate_file(self, location: str) -> tuple[BackupStore, str]:
        return split_location(location)

    # --- what tests read --------------------------------------------------------------

    def ids(self, status: str) -> set[str]:
        """Ids of the live rows in one status."""
        return {i for i, r in self.rows.items() if row_status(r) == status}

    def writes(self) -> list[str]:
        """The calls that change the server."""
        kinds = ("delete", "rerun", "upgrade", "downgrade", "recreate", "aggregate")
        return [c for c in self.calls if c.split(":")[0] in kinds]


class Killed(BaseException):
    """The run's process dies here (SIGKILL, a cancel, a flow timeout): no handler runs."""


@dataclass
class FakeJournal:
    """The run journal in memory; saves and clears are recorded in the server's calls."""

    ops: FakeOps
    entry: RunJournal | None = None

    def save(self, journal: RunJournal) -> None:
        self.ops.calls.append(f"journal:{journal.step}")
        self.entry = journal

    def clear(self) -> None:
        self.ops.calls.append("journal:clear")
        self.entry = None
