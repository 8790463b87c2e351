"""One regeneration engine for profiles and for one agent_version's user playbooks.

stall check -> guard -> read every row once (complete, proven listings) into the backup
file (fsynced before the first write) and the gate's baseline -> stale-PENDING guard ->
rerun (wait on the operation by id) -> read the candidate -> gate -> upgrade -> verify by
ids, with a rollback to the backup when anything from the upgrade on fails.

The engine decides; every server call, artifact and event goes through a `ServerOps`
(tasks/ops.py runs them as Prefect tasks; unit tests pass an in-memory server), and the
differences between kinds are data (core/kinds.py). It returns a `RegenerationOutcome`.

Rollback is an explicit try/except rather than a Prefect transaction: the rollback's own
result (what it did, what still differs) decides the message the run ends with.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from core.backup import BackupInfo, open_backup
from core.kinds import STATUSES, Kind, Status
from core.outcome import Decision, GateOutcome, RegenerationOutcome, TouchedIds
from core.rollback import describe_residue, plan_rollback
from core.sinks import BackupTarget, Reading, ReadRequest
from core.stall import Stall, describe_failed_operation, infer_stall
from core.state import (
    ExpectedState,
    IdSnapshot,
    expected_after_upgrade,
    name_ids,
    verify_ids,
)
from core.touched import write_touched_ids
from core.upgrade import UpgradeUndetermined
from deployments import catalogue
from flows.params import PlaybookRegenerationParams, RegenerationParams
from gate import GatePolicy, GateReport, Severity
from reflexio_api import ReflexioError
from reflexio_api.models import OperationStatus
from tasks.report import RunSummary


class Refused(RuntimeError):
    """The run refuses to go on; the message says why and what to do."""


class ServerOps(Protocol):
    """Every effect the engine has: server calls, artifacts, events, notifications."""

    kind: Kind
    url: str

    def check_stall(self) -> tuple[Stall | None, str]: ...
    def refuse_if_running(self) -> None: ...
    def read(self, request: ReadRequest) -> Reading: ...
    def delete(self, ids: Collection[str]) -> int: ...
    def start_rerun(
        self, source: str | None, start_time: datetime | None, end_time: datetime | None
    ) -> str: ...
    def wait(self, operation_id: str, timeout_s: float, artifact_key: str) -> OperationStatus: ...
    def report_inferred_stall(self, stall: Stall) -> str: ...
    def clear_inferred_stall(self) -> None: ...
    def gate(
        self,
        candidate: pd.DataFrame,
        baseline: pd.DataFrame,
        policy: GatePolicy,
        artifact_prefix: str,
        dask_address: str | None,
    ) -> GateReport: ...
    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]: ...
    def downgrade(self, only_affected_users: bool) -> dict[str, Any]: ...
    def recreate(self, rows: Iterable[dict[str, Any]]) -> int: ...
    def aggregate(self) -> str: ...
    def notify(self, subject: str, body: str) -> None: ...
    def emit(self, event: str, **payload: Any) -> None: ...


def stale_pending_message(count: int, what: str) -> str:
    """Refusal for rows left PENDING by an earlier rerun (H5: they would be promoted too)."""
    return (
        f"Refusing to regenerate: {count} {what} are already PENDING from an earlier rerun. "
        "An upgrade would promote them together with the new generation (H5). Inspect them, "
        "then rerun with discard_stale_pending=True to delete them first (they are in this "
        "run's backup)."
    )


def rows_from_backup(path: str, ids: Collection[str], kind: Kind) -> Iterator[dict[str, Any]]:
    """The backed-up rows with these ids, streamed out of the backup file."""
    return (row for row in open_backup(Path(path)).iter_rows() if kind.row_id(row) in ids)


@dataclass
class Engine:
    """One run of one kind on one server."""

    ops: ServerOps
    params: RegenerationParams
    summary: RunSummary
    run_id: str
    backup: BackupInfo | None = field(default=None, init=False)
    users_with_current: frozenset[str] = field(default=frozenset(), init=False)
    """Users that had a CURRENT row when the run started (H6: who a rerun can strand)."""

    @property
    def kind(self) -> Kind:
        return self.ops.kind

    @property
    def prefix(self) -> str:
        return self.kind.artifact_prefix(self.ops.url)

    def outcome(self, decision: Decision, message: str, **fields: Any) -> RegenerationOutcome:
        """The run's result; the summary's decision is the same sentence."""
        self.summary.decision = message
        return RegenerationOutcome(
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            server=self.ops.url,
            decision=decision,
            message=message,
            counts_before=self.summary.counts_before,
            counts_after=self.summary.counts_after,
            backup=self.summary.backup_path,
            **fields,
        )

    # --- the steps -----------------------------------------------------------------------

    def run(self) -> RegenerationOutcome:
        """Every step, in order; see the module docstring."""
        stall, note = self.ops.check_stall()
        if stall is not None:
            return self.outcome(Decision.STALLED, f"{stall.message} ({note})")
        self.ops.refuse_if_running()
        before = self.read_and_back_up()
        self.guard_stale_pending(before.snapshot)

        failed = self.rerun()
        if failed is not None:
            return failed
        self.ops.clear_inferred_stall()

        after_rerun = self.ops.read(
            ReadRequest(
                statuses=STATUSES if self.kind.rerun_tombstones_current else ("pending",),
                candidate=True,
            )
        )
        assert after_rerun.candidate is not None and before.baseline is not None
        state = self.state_before_upgrade(before.snapshot, after_rerun.snapshot)
        if after_rerun.candidate.empty and before.baseline.empty:
            return self.outcome(
                Decision.NOTHING_TO_DO, f"No {self.kind.label} before or after the rerun."
            )

        gate = self.gate(after_rerun.candidate, self.baseline_at_stake(before.baseline, state))
        if gate.blocked or self.params.dry_run:
            return self.not_upgraded(gate, state)
        return self.upgrade(gate, before, state)

    def read_and_back_up(self) -> Reading:
        """One complete pass over every status: the backup (before any write), the
        baseline frame and the ids."""
        reading = self.ops.read(
            ReadRequest(
                statuses=STATUSES,
                backup=BackupTarget(self.params.backup_dir, self.ops.url, self.run_id),
                baseline_sources=tuple(self.params.sources),
            )
        )
        assert reading.backup is not None
        self.backup = reading.backup
        self.users_with_current = frozenset(reading.snapshot.current.values())
        self.summary.backup_path = str(reading.backup.manifest_path)
        self.summary.counts_before = reading.snapshot.counts().as_dict()
        self.summary.note(
            f"Backed up {reading.backup.total} {self.kind.label} "
            f"({reading.backup.counts}) to {reading.backup.manifest_path} before any write."
        )
        return reading

    def guard_stale_pending(self, before: IdSnapshot) -> None:
        """Refuse (or, when asked, delete by id) PENDING rows an earlier rerun left (H5)."""
        if not before.pending:
            return
        if not self.params.discard_stale_pending:
            raise Refused(stale_pending_message(len(before.pending), self.kind.label))
        deleted = self.ops.delete(before.pending)
        self.summary.note(f"Deleted {deleted} stale PENDING {self.kind.label} (in the backup).")
        before.pending.clear()

    def rerun(self) -> RegenerationOutcome | None:
        """Rerun (once per source); None when every rerun completed with output."""
        for source in self.params.sources or [None]:
            operation_id = self.ops.start_rerun(
                source, self.params.start_time, self.params.end_time
            )
            status = self.ops.wait(
                operation_id, self.params.operation_timeout_s, f"{self.prefix}-progress"
            )
            self.summary.note(
                f"rerun{f' of source {source}' if source else ''} ({operation_id}): "
                f"{status.status}, {status.processed_users}/{status.total_users} users, "
                f"{status.failed_users} failed, stats {status.stats}."
            )
            stall = infer_stall(status, self.kind.service)
            if stall is not None or status.status != "completed":
                return self.generation_failed(status, stall)
        return None

    def generation_failed(
        self, status: OperationStatus, stall: Stall | None
    ) -> RegenerationOutcome:
        """Nothing is upgraded; the candidate is discarded where that is safe."""
        leftover = self.leave_candidate()
        if stall is not None:
            note = self.ops.report_inferred_stall(stall)
            message = f"{stall.message} ({note}) Nothing was upgraded. {leftover}"
            return self.outcome(Decision.STALLED, message)
        message = f"{describe_failed_operation(status)} Nothing was upgraded. {leftover}"
        return self.outcome(Decision.GENERATION_FAILED, message)

    def leave_candidate(self) -> str:
        """Delete the candidate's PENDING rows (profiles), or keep them and name the users
        a rerun left without a CURRENT row (playbooks, H6). Returns what was done."""
        now = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        if self.kind.candidate_deleted_when_not_upgraded:
            deleted = self.ops.delete(now.pending)
            return f"Deleted the {deleted} PENDING {self.kind.label} this run created."
        stranded = sorted(self.users_with_current - set(now.current.values()))
        self.summary.extra["users without a CURRENT row"] = ", ".join(stranded) or "none"
        kept = f"The candidate's {len(now.pending)} PENDING row(s) are kept (H6)."
        if not stranded:
            return f"{kept} No user lost their CURRENT row."
        return (
            f"{kept} {len(stranded)} user(s) have no CURRENT row now (the rerun tombstoned "
            f"them as 'merged', H6): {', '.join(stranded[:10])}. Ways back: accept the "
            "candidate (upgrade_user_playbooks), or fix the cause and rerun this flow (a "
            f"playbook rerun clears its PENDING rows first); every pre-rerun row is in "
            f"{self.summary.backup_path}."
        )

    def state_before_upgrade(self, before: IdSnapshot, after_rerun: IdSnapshot) -> IdSnapshot:
        """Ids as the upgrade will find them. A profile rerun only adds PENDING rows; a
        playbook rerun also tombstones CURRENT rows (H6), so its CURRENT is read again."""
        if self.kind.rerun_tombstones_current:
            return after_rerun
        return IdSnapshot(
            current=before.current, pending=after_rerun.pending, archived=before.archived
        )

    def baseline_at_stake(self, baseline: pd.DataFrame, state: IdSnapshot) -> pd.DataFrame:
        """The CURRENT rows the upgrade would archive: with only_affected_users (profiles),
        users without new rows keep theirs, so they are not compared (and not "lost")."""
        if not (self.kind.upgrade_may_spare_unaffected_users and self.params.only_affected_users):
            return baseline
        affected = set(state.pending.values())
        at_stake = baseline[baseline["user_id"].isin(affected)]
        spared = baseline["user_id"].nunique() - at_stake["user_id"].nunique()
        if spared:
            self.summary.note(
                f"{spared} user(s) without new rows keep their CURRENT {self.kind.label} "
                "(only_affected_users) and are not part of the gate's comparison."
            )
        return at_stake

    def gate(self, candidate: pd.DataFrame, baseline: pd.DataFrame) -> GateOutcome:
        """Run the gate; note its sentence and emit gate passed/failed."""
        report = self.ops.gate(
            candidate,
            baseline,
            self.params.policy(),
            self.prefix,
            self.params.gate_dask_address,
        )
        verdict = report.verdict
        blocked = verdict is Severity.FAIL or (
            verdict is Severity.WARN and not self.params.allow_warn
        )
        self.summary.gate = report.summary_sentence()
        self.ops.emit(
            catalogue.EVENT_GATE_FAILED if blocked else catalogue.EVENT_GATE_PASSED,
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            verdict=verdict.value,
            candidate_rows=report.candidate_rows,
            baseline_rows=report.baseline_rows,
        )
        return GateOutcome(
            verdict=verdict.value,
            sentence=report.summary_sentence(),
            markdown=report.to_markdown(),
            blocked=blocked,
        )

    def not_upgraded(self, gate: GateOutcome, state: IdSnapshot) -> RegenerationOutcome:
        """Gate blocked, or dry run: CURRENT untouched."""
        if self.kind.candidate_deleted_when_not_upgraded:
            deleted = self.ops.delete(state.pending)
            leftover = f"The candidate's {deleted} PENDING row(s) were deleted."
        else:
            leftover = self.leave_candidate()
        if gate.blocked:
            message = (
                f"Gate verdict {gate.verdict.upper()}: not upgraded; CURRENT untouched. "
                f"{gate.sentence} {leftover}"
            )
            return self.outcome(Decision.GATE_BLOCKED, message, gate=gate)
        message = f"Dry run: gate verdict {gate.verdict}; nothing was upgraded. {leftover}"
        return self.outcome(Decision.DRY_RUN, message, gate=gate)

    def upgrade(self, gate: GateOutcome, before: Reading, state: IdSnapshot) -> RegenerationOutcome:
        """Upgrade, then verify by ids; roll back to the backup on any failure from here."""
        only_affected = self.params.only_affected_users
        expected = expected_after_upgrade(self.kind, state, only_affected)
        backed_up = before.snapshot.all_ids()
        try:
            result = self.ops.upgrade(only_affected, len(expected.promoted))
        except UpgradeUndetermined as exc:
            message = f"{exc} Backup: {self.summary.backup_path}."
            return self.outcome(Decision.ERROR, message, gate=gate)
        except Exception as exc:
            return self.roll_back(self.reason(exc), gate, before.snapshot)
        self.summary.note(f"Upgrade: {result.get('message')}")
        try:
            after = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
            self.summary.counts_after = after.counts().as_dict()
            verify_ids(expected, after, backed_up)
        except Exception as exc:
            return self.roll_back(self.reason(exc), gate, before.snapshot)
        touched = self.touched(expected)
        self.ops.emit(
            catalogue.EVENT_UPGRADED,
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            promoted=touched.promoted,
            archived=touched.archived,
            deleted=touched.deleted,
            backup=self.summary.backup_path,
            counts_after=self.summary.counts_after,
        )
        message = (
            f"Upgraded: {touched.promoted} {self.kind.label} promoted, {touched.archived} "
            f"archived, {touched.deleted} old ARCHIVED deleted (all in the backup); verified "
            f"by id. Gate {gate.verdict}. Backup: {self.summary.backup_path}."
        )
        outcome = self.outcome(Decision.UPGRADED, message, gate=gate, touched=touched)
        return self.after_upgrade(outcome)

    @staticmethod
    def reason(exc: Exception) -> str:
        """An error as the sentence a rollback names."""
        return str(exc) if isinstance(exc, ReflexioError | RuntimeError) else repr(exc)

    def touched(self, expected: ExpectedState) -> TouchedIds:
        """Counts of the ids the upgrade touched, and the file naming each one."""
        assert self.backup is not None
        path = write_touched_ids(self.backup.manifest_path, expected)
        return TouchedIds(
            promoted=len(expected.promoted),
            archived=len(expected.archived),
            deleted=len(expected.deleted),
            ids_file=str(path),
        )

    def after_upgrade(self, outcome: RegenerationOutcome) -> RegenerationOutcome:
        """Aggregation (playbooks) and the pass notification."""
        if isinstance(self.params, PlaybookRegenerationParams) and self.params.aggregate:
            try:
                message = self.ops.aggregate()
            except ReflexioError as exc:
                self.summary.extra["aggregation"] = f"FAILED: {exc}"
                return self.outcome(
                    Decision.ERROR,
                    f"{outcome.message} Aggregation failed: {exc}. Run it again.",
                    gate=outcome.gate,
                    touched=outcome.touched,
                )
            self.summary.extra["aggregation"] = message
            outcome = self.outcome(
                Decision.UPGRADED,
                f"{outcome.message} Aggregation: {message}",
                gate=outcome.gate,
                touched=outcome.touched,
            )
        if self.params.notify_on_pass:
            try:
                self.ops.notify(f"Reflexio {self.kind.label} regenerated", outcome.message)
            except RuntimeError as exc:
                self.summary.note(str(exc))
        return outcome

    def repair_to_backup(self, backed: dict[str, Status], steps: list[str]) -> str:
        """Delete what the backup lacks, re-create what it has and the server does not;
        returns what still differs ('' when the rows equal the backup)."""
        plan = plan_rollback(backed, self.ops.read(ReadRequest(statuses=STATUSES)).snapshot)
        if plan.delete:
            steps.append(f"deleted {self.ops.delete(plan.delete)} row(s) not in the backup")
        wanted = plan.recreate
        if not self.kind.recreate_keeps_ids:  # re-created as new CURRENT rows
            wanted = frozenset(i for i in wanted if backed[i] == "current")
        recreated = 0
        if wanted:
            rows = rows_from_backup(self.summary.backup_path or "", wanted, self.kind)
            recreated = self.ops.recreate(rows)
            steps.append(f"re-created {recreated} row(s) from the backup")
        final = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        self.summary.counts_after = final.counts().as_dict()
        left = plan_rollback(backed, final)
        if self.kind.recreate_keeps_ids:
            return describe_residue(left)
        renewed = frozenset(i for i in left.recreate if backed[i] == "current")
        if not (len(left.delete) == len(renewed) == recreated):
            return describe_residue(left)
        if recreated:
            steps.append(
                f"the {recreated} re-created row(s) have new ids (the server assigns them)"
            )
        gone = left.recreate - renewed
        if not gone:
            return ""
        return (
            f"{len(gone)} ARCHIVED row(s) the upgrade deleted cannot be re-created as ARCHIVED "
            f"(the server makes them CURRENT); they stay in the backup: {name_ids(gone)}"
        )

    def roll_back(self, reason: str, gate: GateOutcome, before: IdSnapshot) -> RegenerationOutcome:
        """Put the server's rows back to the backup: the server's downgrade, then every id
        that still differs is deleted or re-created from the backup file."""
        steps: list[str] = []
        backed: dict[str, Status] = {i: "current" for i in before.current}
        backed.update(dict.fromkeys(before.archived, "archived"))
        try:
            result = self.ops.downgrade(self.params.only_affected_users)
            steps.append(f"downgrade: {result.get('message')}")
        except ReflexioError as exc:
            steps.append(f"downgrade failed ({exc}); repairing by id")
        try:
            residue = self.repair_to_backup(backed, steps)
        except (ReflexioError, RuntimeError) as exc:
            residue = f"the rollback stopped: {exc}"
        steps.append(
            f"data DIFFERS from the backup: {residue}" if residue else "data equals the backup"
        )
        self.ops.emit(
            catalogue.EVENT_ROLLED_BACK,
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            reason=reason[:300],
            equal=not residue,
        )
        finish = (
            f" To finish: run restore-profiles with backup_file={self.summary.backup_path}."
            if residue and self.kind.recreate_keeps_ids
            else ""
        )
        message = (
            f"Upgrade rolled back after: {reason}. Rollback: {'; '.join(steps)}. "
            f"Backup: {self.summary.backup_path}.{finish}"
        )
        return self.outcome(Decision.ROLLED_BACK, message, gate=gate)
