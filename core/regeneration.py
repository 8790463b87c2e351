"""One regeneration engine for profiles and for one agent_version's user playbooks.

A run is five phases, each a public method that `run` composes (a caller may compose its
own: the prompt check ends with a step that keeps the candidate, flows/prompt_change.py):

- prepare: stall check, no operation running, every row read once (complete, proven
  listings) into the backup file (fsynced before the first write) and the gate's
  baseline, stale-PENDING guard;
- candidate: the rerun (waited on by operation id) writes the candidate PENDING;
- gate: read the candidate, gate it (then an operator's approval, when the gate warned
  and the run asks, or always with require_approval);
- promote: the ids the upgrade will touch saved and journaled, then the upgrade;
- verify: by ids, then the live and out-of-scope rows it archived made CURRENT again;

plus undo: when anything from the upgrade on fails, establish from the server what the
upgrade did and put back only that (and `resume`, the same for a run that died).

The engine decides; every server call, artifact, event and backup location goes through
a `ServerOps` (tasks/ops.py runs them as Prefect tasks; unit tests pass an in-memory
server), and the differences between kinds are data (core/kinds.py). It returns a
`RegenerationOutcome`. No Prefect here: flows/ wraps it (flows/_common.py).

Rollback is an explicit try/except rather than a Prefect transaction: the rollback's own
result (what it did, what still differs) decides the message the run ends with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from core.approval import Approval, approval_request
from core.backup import (
    LIVE_PART,
    BackupError,
    BackupInfo,
    BackupWriter,
    info_of,
    open_backup,
)
from core.backup_store import BackupStore
from core.identity import server_key
from core.journal import JournalSink, RunJournal
from core.kinds import STATUSES, Kind, Status, row_status
from core.listing import ListingNotProven
from core.live import (
    KeepPlan,
    LiveRows,
    LiveRule,
    Scope,
    kept_problems,
    replaced_beyond_candidate,
    rows_to_keep,
    unsourced_refusal,
)
from core.outcome import Decision, GateOutcome, RegenerationOutcome, TouchedIds
from core.prune import prune_batches
from core.rollback import (
    UpgradeEffect,
    describe_gone,
    describe_residue,
    plan_rollback,
    upgrade_effect,
)
from core.sinks import BackupTarget, Reading, ReadRequest
from core.stall import Stall, describe_failed_operation, infer_stall
from core.state import (
    ExpectedState,
    IdSnapshot,
    VerificationFailed,
    expected_after_upgrade,
    name_ids,
    vanished_ids,
    verify_ids,
)
from core.summary import RunSummary
from core.touched import read_touched_ids, write_touched_ids
from core.upgrade import UpgradeUndetermined
from deployments import catalogue
from gate import GatePolicy, GateReport, RunScope, Severity
from gate.scope import ALL_SOURCES, rows_by_source
from reflexio_api import IncompleteListing, OperationTimeout, ReflexioError
from reflexio_api.models import OperationStatus


class Refused(RuntimeError):
    """The run refuses to go on; the message says why and what to do."""


class RunParams(Protocol):
    """What a run is asked to do (flows/params.py's RegenerationParams and its playbook
    variant are the forms that fill it)."""

    sources: list[str]
    replace_unsourced_rows: bool
    start_time: datetime | None
    end_time: datetime | None
    backup_dir: str | Path
    discard_stale_pending: bool
    dry_run: bool
    only_affected_users: bool
    on_warn: str
    require_approval: bool
    approval_timeout_s: int
    operation_timeout_s: float
    max_rows_to_keep: int
    prune_archived_above: int
    gate_dask_address: str | None
    notify_on_pass: bool

    def policy(self) -> GatePolicy: ...


class ServerOps(Protocol):
    """Every effect the engine has: server calls, artifacts, events, notifications, and
    where backups are (a backup location may name a Prefect block)."""

    kind: Kind
    url: str

    def check_stall(self) -> tuple[Stall | None, str]: ...
    def refuse_if_running(self) -> None: ...
    def running_operation(self) -> str | None: ...
    def read(self, request: ReadRequest) -> Reading: ...
    def delete(self, ids: Collection[str]) -> int: ...
    def start_rerun(
        self, source: str | None, start_time: datetime | None, end_time: datetime | None
    ) -> str: ...
    def wait(self, operation_id: str, timeout_s: float, artifact_key: str) -> OperationStatus: ...
    def cancel_rerun(self, operation_id: str) -> str: ...
    def report_inferred_stall(self, stall: Stall) -> str: ...
    def clear_inferred_stall(self) -> None: ...
    def gate(
        self,
        candidate: pd.DataFrame,
        baseline: pd.DataFrame,
        policy: GatePolicy,
        artifact_prefix: str,
        dask_address: str | None,
        scope: RunScope | None,
    ) -> GateReport: ...
    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]: ...
    def downgrade(self, only_affected_users: bool) -> dict[str, Any]: ...
    def recreate(self, rows: Iterable[dict[str, Any]]) -> int: ...
    def aggregate(self) -> str: ...
    def notify(self, subject: str, body: str) -> None: ...
    def ask_approval(self, request_markdown: str, timeout_s: int) -> Approval: ...
    def emit(self, event: str, **payload: Any) -> None: ...
    def open_location(self, location: str | Path) -> BackupStore: ...
    def locate_file(self, location: str) -> tuple[BackupStore, str]: ...


def stale_pending_message(count: int, what: str) -> str:
    """Refusal for rows left PENDING by an earlier rerun (H5: they would be promoted too)."""
    return (
        f"Refusing to regenerate: {count} {what} are already PENDING from an earlier rerun. "
        "An upgrade would promote them together with the new generation (H5). Inspect them, "
        "then rerun with discard_stale_pending=True to delete them first (they are in this "
        "run's backup)."
    )


def rows_from_backup(
    backup: BackupInfo, ids: Collection[str], kind: Kind
) -> Iterator[dict[str, Any]]:
    """The backed-up rows with these ids, streamed out of the backup's store."""
    rows = open_backup(backup.manifest_name, backup.store).iter_rows()
    return (row for row in rows if kind.row_id(row) in ids)


def as_current(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as CURRENT rows (the server's CURRENT status is none)."""
    return [{**row, "status": None} for row in rows]


@dataclass(frozen=True)
class Judged:
    """A candidate the gate let through (and an operator approved, when asked): its
    verdict, and every status's ids and live rows as last read."""

    gate: GateOutcome
    state: IdSnapshot
    live: LiveRows


@dataclass(frozen=True)
class Promoted:
    """An upgrade the server answered: the candidate it was sent for, what it must have
    done, the rows to make CURRENT again after it, and the ids it touched."""

    judged: Judged
    expected: ExpectedState
    keep: KeepPlan
    touched: TouchedIds


@dataclass
class Engine:
    """One run of one kind on one server."""

    ops: ServerOps
    params: RunParams
    summary: RunSummary
    run_id: str
    backup: BackupInfo | None = field(default=None, init=False)
    before: IdSnapshot = field(default_factory=IdSnapshot, init=False)
    """Every id per status when the run started (what the backup holds)."""
    rerun_started_at: int | None = field(default=None, init=False)
    """The server's epoch second the first rerun started: live rows are newer."""
    processed: dict[str, int] = field(default_factory=dict, init=False)
    """Users each rerun reported processing, by source (the gate's rerun-yield checks)."""
    live_backup: BackupInfo | None = field(default=None, init=False)
    """The backup of the rows the first one predates (live rows), when there are any."""
    approval: Approval | None = field(default=None, init=False)
    """The operator's answer, when the run asked for one."""
    discarded: frozenset[str] = field(default=frozenset(), init=False)
    """Stale PENDING ids the run deleted before its rerun (discard_stale_pending)."""
    upgrade_sent: bool = field(default=False, init=False)
    """The upgrade request went out: from then on only `undo` may change rows back."""
    journal: JournalSink | None = None
    """Where the run journal goes (core/journal.py); None: the caller keeps its own record
    (the prompt check)."""
    entry: RunJournal | None = field(default=None, init=False)
    """The journal as last written; None before the first write and once cleared."""
    left_unfinished: bool = field(default=False, init=False)
    """The run ends with something a repair must finish (the journal is kept)."""
    residue_is_permanent: bool = field(default=False, init=False)
    """What a rollback left differs for good (user playbooks the upgrade deleted cannot be
    re-created as ARCHIVED): no repair would change it."""

    @property
    def kind(self) -> Kind:
        return self.ops.kind

    @cached_property
    def store(self) -> BackupStore:
        """Where this run's backups go (backup_dir: a directory, URL or block)."""
        return self.ops.open_location(self.params.backup_dir)

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
            approval=self.approval,
            **fields,
        )

    # --- the journal ---------------------------------------------------------------------

    def write_journal(self, entry: RunJournal) -> None:
        """Record, durably, what the run is about to do (before it does it)."""
        if self.journal is not None:
            self.journal.save(entry)
        self.entry = entry

    def journal_candidate(self) -> None:
        """Before the run's first write: its backup is the evidence a repair needs."""
        if self.entry is not None:
            return
        assert self.backup is not None
        self.write_journal(
            RunJournal(
                server=server_key(self.ops.url),
                flow_run_id=self.run_id,
                kind=self.kind.name,
                agent_version=self.kind.agent_version,
                backup=self.backup.manifest_path,
                only_affected_users=self.only_affected_users,
                written_at=int(time.time()),
            )
        )

    def clear_journal(self) -> None:
        """The server is consistent again: nothing for a repair to do."""
        if self.entry is not None and self.journal is not None:
            self.journal.clear()
        self.entry = None

    # --- the run: its phases in order ----------------------------------------------------

    def run(self) -> RegenerationOutcome:
        """Every phase: prepare -> candidate -> gate -> promote -> verify."""
        return self.run_to(self.promote_and_verify)

    def run_to(self, last: Callable[[Judged], RegenerationOutcome]) -> RegenerationOutcome:
        """prepare -> candidate -> gate, then `last` with the candidate the gate let
        through: promote and verify, or a caller's own step (the prompt check keeps the
        candidate to promote every kind or none). A failure after the rerun and before an
        upgrade is sent leaves the candidate as a blocked gate leaves it. The journal is
        removed when the run leaves the server consistent, and kept for the next writer
        otherwise (an exception, a kill, residue)."""
        outcome = self.phases(last)
        if outcome.decision is not Decision.ERROR and not self.left_unfinished:
            self.clear_journal()
        return outcome

    def phases(self, last: Callable[[Judged], RegenerationOutcome]) -> RegenerationOutcome:
        """The phases in order, up to the first that ends the run (see `run_to`)."""
        baseline = self.prepare()
        if isinstance(baseline, RegenerationOutcome):
            return baseline
        failed = self.candidate()
        if failed is not None:
            return failed
        try:
            judged = self.gate(baseline)
            return judged if isinstance(judged, RegenerationOutcome) else last(judged)
        except Exception as exc:
            if self.upgrade_sent:
                raise
            return self.stopped_before_upgrade(exc)

    def promote_and_verify(self, judged: Judged) -> RegenerationOutcome:
        """The last two phases: upgrade the candidate, then verify what the server did."""
        promoted = self.promote(judged)
        return promoted if isinstance(promoted, RegenerationOutcome) else self.verify(promoted)

    # --- the phases ----------------------------------------------------------------------

    def prepare(self) -> pd.DataFrame | RegenerationOutcome:
        """No stall, no operation running, every row read once into the backup (fsynced
        before any write) and the gate's baseline, stale PENDING refused or deleted (H5).
        Returns the baseline (the CURRENT rows in scope), or the outcome of a stall."""
        stall, note = self.ops.check_stall()
        if stall is not None:
            return self.outcome(Decision.STALLED, f"{stall.message} ({note})")
        self.ops.refuse_if_running()
        before = self.read_and_back_up()
        assert before.baseline is not None
        self.guard_unsourced(before.baseline)
        self.guard_stale_pending(before.snapshot)
        return before.baseline

    def candidate(self) -> RegenerationOutcome | None:
        """The rerun writes the candidate PENDING; None when every rerun completed, else
        the outcome (failed, stalled, timed out: nothing upgraded)."""
        failed = self.rerun()
        if failed is None:
            self.ops.clear_inferred_stall()
        return failed

    def gate(self, baseline: pd.DataFrame) -> Judged | RegenerationOutcome:
        """Read the candidate, gate it against `baseline`, ask an operator when the run
        must. Returns the candidate let through, or the outcome of a run that ends here
        (nothing to do, gate blocked, dry run, not approved)."""
        after_rerun = self.read_after_rerun(candidate=True)
        assert after_rerun.candidate is not None and after_rerun.live is not None
        state = after_rerun.snapshot
        if after_rerun.candidate.empty and baseline.empty:
            return self.outcome(
                Decision.NOTHING_TO_DO, f"No {self.kind.label} before or after the rerun."
            )
        gate = self.run_gate(
            after_rerun.candidate, baseline, self.baseline_at_stake(baseline, state)
        )
        if gate.blocked or self.params.dry_run:
            return self.not_upgraded(gate, state)
        judged = Judged(gate, state, after_rerun.live)
        why = self.approval_reason(gate)
        if why is None:
            return judged
        if not self.ask_approval(gate, why).approved:
            return self.not_upgraded(gate, state)
        # The answer may have taken hours: what users wrote meanwhile is live too.
        return self.read_again(judged)

    def promote(self, judged: Judged) -> Promoted | RegenerationOutcome:
        """Save the live rows and the ids the upgrade will touch, journal them, upgrade.
        Returns the upgrade to verify, or the outcome of one not sent (too many rows to
        keep CURRENT), undetermined, or failed (then undone)."""
        gate, state = judged.gate, judged.state
        only_affected = self.only_affected_users
        expected = expected_after_upgrade(self.kind, state, only_affected)
        keep = rows_to_keep(judged.live, expected.archived)
        if len(keep.ids) > self.params.max_rows_to_keep:
            return self.not_upgraded(gate, state, too_many=keep)
        self.save_live_rows(judged.live)
        self.announce(keep)
        touched = self.touched(expected, keep)  # written before the upgrade: for restore
        self.journal_candidate()
        assert self.entry is not None
        live_file = self.live_backup.manifest_path if self.live_backup else None
        self.write_journal(self.entry.upgrading(touched.ids_file, live_file))
        self.upgrade_sent = True
        try:
            self.prune(state)
            result = self.ops.upgrade(only_affected, len(expected.promoted))
        except UpgradeUndetermined as exc:
            message = f"{exc} Backup: {self.summary.backup_path}."
            return self.outcome(Decision.ERROR, message, gate=gate)
        except Exception as exc:
            return self.undo(self.reason(exc), gate, state)
        self.summary.note(f"Upgrade: {result.get('message')}")
        return Promoted(judged, expected, keep, touched)

    def prune(self, state: IdSnapshot) -> None:
        """Delete the old ARCHIVED rows the upgrade would delete, in batches, before it
        (core/prune.py); they are in the backup and in the journaled touched-ids file."""
        batches = prune_batches(self.before, state, self.params.prune_archived_above)
        if batches:
            deleted = sum(self.ops.delete(batch) for batch in batches)
            self.summary.note(
                f"Pruned {deleted} old ARCHIVED {self.kind.label} in {len(batches)} batch(es) "
                "ahead of the upgrade (in the backup; a rollback re-creates them)."
            )

    def verify(self, promoted: Promoted) -> RegenerationOutcome:
        """Check by id what the upgrade did, then make the live and out-of-scope rows it
        archived CURRENT again; undo it when any of that fails. Then aggregation
        (playbooks) and the pass notification."""
        gate, state, live = promoted.judged.gate, promoted.judged.state, promoted.judged.live
        expected, keep, touched = promoted.expected, promoted.keep, promoted.touched
        saved = self.before.all_ids() | set(live.rows)
        known = frozenset(state.all_ids())
        try:
            after = self.read_after_upgrade(known)
        except (ListingNotProven, IncompleteListing) as exc:
            self.left_unfinished = True
            message = (
                f"Upgraded, but the rows after it could not be proven complete in two reads "
                f"({exc}); the upgrade is not rolled back on that alone. The run journal is "
                "kept: the next writer on this server checks the upgrade by id and keeps or "
                f"undoes it. Backup: {self.summary.backup_path}."
            )
            return self.outcome(Decision.ERROR, message, gate=gate)
        except Exception as exc:
            return self.undo(self.reason(exc), gate, state)
        try:
            self.summary.counts_after = after.snapshot.counts().as_dict()
            verify_ids(expected, after.snapshot, saved, known=known)
        except Exception as exc:
            return self.undo(self.reason(exc), gate, state)
        gone = vanished_ids(expected, after.snapshot)
        if gone:
            self.summary.note(
                f"{len(gone)} row(s) the upgrade left in place are gone since (a user, dedup "
                f"or expiry removed them; not the upgrade's doing): {name_ids(gone)}"
            )
        assert after.live is not None
        late = [r for r in after.live.rows.values() if row_status(r) == "archived"]
        try:
            kept = self.make_current_again(keep, live, late, known | after.snapshot.all_ids())
        except (ReflexioError, RuntimeError) as exc:
            reason = f"the rows to keep CURRENT were not all made CURRENT again: {exc}"
            return self.undo(reason, gate, state)
        self.clear_journal()  # upgraded and verified: what follows needs no repair
        self.ops.emit(
            catalogue.EVENT_UPGRADED,
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            promoted=touched.promoted,
            archived=touched.archived,
            deleted=touched.deleted,
            kept_current=touched.kept_current,
            backup=self.summary.backup_path,
            counts_after=self.summary.counts_after,
        )
        message = (
            f"Upgraded: {touched.promoted} {self.kind.label} promoted, {touched.archived} "
            f"archived, {touched.deleted} old ARCHIVED deleted (all in the backup); verified "
            f"by id. Gate {gate.verdict}. Backup: {self.summary.backup_path}."
        )
        outcome = self.outcome(Decision.UPGRADED, f"{message}{kept}", gate=gate, touched=touched)
        return self.after_upgrade(outcome)

    # --- what the phases are made of -----------------------------------------------------

    def read_after_rerun(self, candidate: bool) -> Reading:
        """Every status again, picking out the live rows (and the candidate's frame)."""
        return self.ops.read(
            ReadRequest(
                statuses=STATUSES,
                candidate=candidate,
                live=LiveRule(self.before.all_ids(), self.rerun_started_at, self.scope),
            )
        )

    def read_again(self, judged: Judged) -> Judged:
        """The candidate with every status read again: rows users wrote since it was
        judged are live rows too."""
        reading = self.read_after_rerun(candidate=False)
        assert reading.live is not None
        return replace(judged, state=reading.snapshot, live=reading.live)

    @property
    def scope(self) -> Scope:
        """What this run regenerates (its sources and time window)."""
        start, end = self.params.start_time, self.params.end_time
        return Scope(
            sources=tuple(self.params.sources),
            start=int(start.timestamp()) if start else None,
            end=int(end.timestamp()) if end else None,
            unsourced=self.params.replace_unsourced_rows,
        )

    def read_and_back_up(self) -> Reading:
        """One complete pass over every status: the backup (before any write), the
        baseline frame and the ids."""
        reading = self.ops.read(
            ReadRequest(
                statuses=STATUSES,
                backup=BackupTarget(self.store, self.ops.url, self.run_id),
                baseline=replace(self.scope, unsourced=True),  # counted by guard_unsourced
            )
        )
        assert reading.backup is not None
        self.backup = reading.backup
        self.before = reading.snapshot
        self.summary.backup_path = str(reading.backup.manifest_path)
        self.summary.counts_before = reading.snapshot.counts().as_dict()
        self.summary.note(
            f"Backed up {reading.backup.total} {self.kind.label} "
            f"({reading.backup.counts}) to {reading.backup.manifest_path} before any write."
        )
        return reading

    def guard_unsourced(self, baseline: pd.DataFrame) -> None:
        """Refuse a run scoped to sources while CURRENT rows carry no source (H15), unless
        it may replace them (replace_unsourced_rows); before any write."""
        refusal = unsourced_refusal(self.scope, baseline, self.kind.label)
        if refusal is not None:
            raise Refused(refusal)

    def guard_stale_pending(self, before: IdSnapshot) -> None:
        """Refuse (or, when asked, delete by id) PENDING rows an earlier rerun left (H5)."""
        if not before.pending:
            return
        if self.kind.rerun_clears_pending:
            self.summary.note(
                f"{len(before.pending)} {self.kind.label} are PENDING from an earlier rerun; "
                "the server's rerun replaces them (they are in the backup)."
            )
            return
        if not self.params.discard_stale_pending:
            raise Refused(stale_pending_message(len(before.pending), self.kind.label))
        self.journal_candidate()
        deleted = self.ops.delete(before.pending)
        self.summary.note(f"Deleted {deleted} stale PENDING {self.kind.label} (in the backup).")
        self.discarded = frozenset(before.pending)
        before.pending.clear()

    def rerun(self) -> RegenerationOutcome | None:
        """Rerun (once per source); None when every rerun completed with output."""
        for source in self.params.sources or [None]:
            self.journal_candidate()
            operation_id = self.ops.start_rerun(
                source, self.params.start_time, self.params.end_time
            )
            assert self.entry is not None
            self.write_journal(self.entry.started_rerun(operation_id))
            try:
                status = self.ops.wait(
                    operation_id, self.params.operation_timeout_s, f"{self.prefix}-progress"
                )
            except OperationTimeout:
                return self.rerun_timed_out(operation_id)
            if self.rerun_started_at is None:
                self.rerun_started_at = status.started_at
            self.processed[source or ALL_SOURCES] = status.processed_users
            self.summary.note(
                f"rerun{f' of source {source}' if source else ''} ({operation_id}): "
                f"{status.status}, {status.processed_users}/{status.total_users} users, "
                f"{status.failed_users} failed, stats {status.stats}."
            )
            stall = infer_stall(status, self.kind.service)
            if stall is not None or status.status != "completed":
                return self.generation_failed(status, stall)
        return None

    def rerun_timed_out(self, operation_id: str) -> RegenerationOutcome:
        """Cancel a rerun that outlived operation_timeout_s; nothing is upgraded."""
        cancelled = self.ops.cancel_rerun(operation_id)
        leftover = self.leave_candidate()
        message = (
            f"The rerun ({operation_id}) did not finish within "
            f"{self.params.operation_timeout_s:g} s; {cancelled}. Nothing was upgraded. "
            f"{leftover}"
        )
        return self.outcome(Decision.GENERATION_FAILED, message)

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

    def stopped_before_upgrade(self, exc: Exception) -> RegenerationOutcome:
        """Something failed after the rerun and before the upgrade was sent (a read, the
        gate, the approval, a backup write): nothing was upgraded; the candidate is left as
        a gate-blocked run leaves it, so no user stays without CURRENT rows (H6)."""
        try:
            leftover = self.leave_candidate()
        except Exception as cleanup:
            self.left_unfinished = True
            leftover = (
                f"The candidate could not be cleaned up ({self.reason(cleanup)}): the next run "
                "finds its PENDING rows (profiles: refused until discard_stale_pending=True; "
                "playbooks: replaced by its rerun); tombstoned playbooks are in the backup "
                f"{self.summary.backup_path}."
            )
        message = (
            f"Stopped after the rerun, before any upgrade: {self.reason(exc)} "
            f"Nothing was upgraded. {leftover}"
        )
        decision = Decision.ERROR if isinstance(exc, ReflexioError) else Decision.REFUSED
        return self.outcome(decision, message)

    def tombstoned(self, now: IdSnapshot) -> frozenset[str]:
        """The CURRENT rows this run's rerun tombstoned (H6): CURRENT when backed up, not
        live now, of a user the rerun wrote PENDING rows for (a vanished row of another
        user was deleted by someone else and is not this run's to bring back)."""
        if not self.kind.rerun_tombstones_current:
            return frozenset()
        rerun_users = set(now.pending.values())
        return frozenset(
            i
            for i, user in self.before.current.items()
            if user in rerun_users and i not in now.current and i not in now.archived
        )

    def leave_candidate(self) -> str:
        """Delete the candidate's PENDING rows (profiles); for playbooks keep them (merged
        rows point at them) and put back, from the backup, every CURRENT row the rerun
        tombstoned (H6), so no user is left without one. Returns what was done."""
        now = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        if self.kind.candidate_deleted_when_not_upgraded:
            deleted = self.ops.delete(now.pending)
            return f"Deleted the {deleted} PENDING {self.kind.label} this run created."
        kept = (
            f"The candidate's {len(now.pending)} PENDING row(s) are kept (merged rows point "
            "at them)."
        )
        tombstoned = self.tombstoned(now)
        if not tombstoned:
            return f"{kept} The rerun tombstoned no CURRENT row."
        assert self.backup is not None
        put_back = self.ops.recreate(
            as_current(rows_from_backup(self.backup, tombstoned, self.kind))
        )
        users = sorted({self.before.current[i] for i in tombstoned})
        self.summary.extra["CURRENT rows put back (H6)"] = (
            f"{put_back} for {len(users)} user(s): {', '.join(users[:10])}"
        )
        return (
            f"{kept} The rerun had tombstoned {len(tombstoned)} CURRENT row(s) of "
            f"{len(users)} user(s) as 'merged' (H6); {put_back} were put back from the "
            f"backup as CURRENT rows (new ids, same content): {name_ids(tombstoned)}."
        )

    def baseline_at_stake(self, baseline: pd.DataFrame, state: IdSnapshot) -> pd.DataFrame:
        """The CURRENT rows the upgrade would archive: with only_affected_users (profiles),
        users without new rows keep theirs, so they are not compared (and not "lost")."""
        if not self.only_affected_users:
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

    def scope_notes(self, at_stake: pd.DataFrame) -> list[str]:
        """What the upgrade replaces beyond what the candidate was learned from, noted in
        the summary (the gate report says it too)."""
        notes = replaced_beyond_candidate(self.scope, at_stake, self.kind.label)
        for note in notes:
            self.summary.note(note)
        return notes

    def run_gate(
        self, candidate: pd.DataFrame, in_scope: pd.DataFrame, at_stake: pd.DataFrame
    ) -> GateOutcome:
        """Gate the candidate against the rows at stake (`in_scope`: every CURRENT row in
        the run's scope, for the yield checks); note its sentence, emit passed/failed."""
        report = self.ops.gate(
            candidate,
            at_stake,
            self.params.policy(),
            self.prefix,
            self.params.gate_dask_address,
            RunScope(
                processed=self.processed,
                scope_rows=rows_by_source(in_scope, self.processed),
                notes=self.scope_notes(at_stake),
            ),
        )
        verdict = report.verdict
        blocked = verdict is Severity.FAIL or (
            verdict is Severity.WARN and self.params.on_warn == "refuse"
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

    def approval_reason(self, gate: GateOutcome) -> str | None:
        """Why this run must ask an operator before upgrading; None: it need not."""
        if gate.verdict == Severity.WARN.value and self.params.on_warn == "ask":
            return "the evaluation gate said WARN and this run has on_warn=ask."
        if self.params.require_approval:
            return f"this run has require_approval on (gate verdict {gate.verdict.upper()})."
        return None

    def ask_approval(self, gate: GateOutcome, why: str) -> Approval:
        """Wait for an operator's answer; the summary and an event record it."""
        timeout_s = self.params.approval_timeout_s
        request = approval_request(self.kind, self.ops.url, why, gate.markdown, timeout_s)
        self.summary.note(f"Asked an operator to approve the upgrade: {why}")
        self.approval = self.ops.ask_approval(request, timeout_s)
        self.summary.approval = self.approval.sentence()
        self.ops.emit(
            catalogue.EVENT_APPROVAL_DECIDED,
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            verdict=gate.verdict,
            decision=self.approval.decision.value,
            by=self.approval.by,
            reason=self.approval.reason[:300],
        )
        return self.approval

    def not_upgraded(
        self, gate: GateOutcome, state: IdSnapshot, too_many: KeepPlan | None = None
    ) -> RegenerationOutcome:
        """Gate blocked, dry run, not approved, or too many rows to keep CURRENT: CURRENT
        untouched."""
        if self.kind.candidate_deleted_when_not_upgraded:
            deleted = self.ops.delete(state.pending)
            leftover = f"The candidate's {deleted} PENDING row(s) were deleted."
        else:
            leftover = self.leave_candidate()
        if too_many is not None:
            message = (
                f"Not upgraded: the upgrade would archive {len(too_many.live)} live row(s) "
                f"and {len(too_many.out_of_scope)} row(s) outside this run's scope "
                f"({self.scope.describe()}) that the run would then have to re-create one "
                f"by one, more than max_rows_to_keep={self.params.max_rows_to_keep}. Run "
                f"without a scope, or raise max_rows_to_keep. Gate {gate.verdict}. {leftover}"
            )
            return self.outcome(Decision.REFUSED, message, gate=gate)
        if self.approval is not None and not self.approval.approved:
            message = (
                f"Not upgraded: {self.approval.sentence()} Gate verdict "
                f"{gate.verdict.upper()}; CURRENT untouched. {gate.sentence} {leftover}"
            )
            return self.outcome(Decision.NOT_APPROVED, message, gate=gate)
        if gate.blocked:
            message = (
                f"Gate verdict {gate.verdict.upper()}: not upgraded; CURRENT untouched. "
                f"{gate.sentence} {leftover}"
            )
            return self.outcome(Decision.GATE_BLOCKED, message, gate=gate)
        message = f"Dry run: gate verdict {gate.verdict}; nothing was upgraded. {leftover}"
        return self.outcome(Decision.DRY_RUN, message, gate=gate)

    def read_after_upgrade(self, known: frozenset[str]) -> Reading:
        """Every status after the upgrade; a reading a busy server kept from being proven
        complete is read once more before anything is concluded from it."""
        request = ReadRequest(statuses=STATUSES, live=LiveRule(known, None))
        try:
            return self.ops.read(request)
        except (ListingNotProven, IncompleteListing) as exc:
            self.summary.note(f"The read after the upgrade was not proven ({exc}); read again.")
            return self.ops.read(request)

    def rollback_target(self, state: IdSnapshot) -> dict[str, Status]:
        """Id -> status a rollback must restore: the rows as the upgrade found them, and
        the CURRENT rows the rerun tombstoned (H6), which the upgrade would not bring back."""
        target: dict[str, Status] = dict.fromkeys(state.archived, "archived")
        target.update(dict.fromkeys(state.current, "current"))
        target.update(dict.fromkeys(self.tombstoned(state), "current"))
        return target

    @property
    def only_affected_users(self) -> bool:
        """Whether the upgrade spares users without new rows (profiles only)."""
        return self.kind.upgrade_may_spare_unaffected_users and self.params.only_affected_users

    def save_live_rows(self, live: LiveRows) -> None:
        """Save the rows the backup predates in a backup of their own (fsynced) before
        the upgrade can archive or delete them."""
        if not live.rows:
            return
        with BackupWriter(
            self.store,
            self.kind.name,
            self.ops.url,
            self.run_id,
            agent_version=self.kind.agent_version,
            part=LIVE_PART,
        ) as writer:
            writer.write(list(live.rows.values()))
        self.live_backup = writer.info
        self.summary.extra["live rows file"] = writer.info.manifest_path

    def announce(self, keep: KeepPlan) -> None:
        """Say, before upgrading, which rows the run will make CURRENT again, and how."""
        if not keep.ids:
            return
        how = (
            "with their ids, content and timestamps"
            if self.kind.recreate_keeps_ids
            else "as new rows with the same content and created_at: the server cannot give "
            "a user playbook its id back, so these ids change"
        )
        self.summary.note(
            f"The upgrade will archive {len(keep.live)} live row(s) (created or changed "
            f"during the run: {name_ids(keep.live) or 'none'}) and {len(keep.out_of_scope)} "
            f"row(s) outside this run's scope ({self.scope.describe()}); the run makes them "
            f"CURRENT again right after it, {how}."
        )

    def make_current_again(
        self,
        keep: KeepPlan,
        live: LiveRows,
        late: list[dict[str, Any]],
        seen: frozenset[str] | set[str],
    ) -> str:
        """Re-create as CURRENT the rows the upgrade archived that must stay CURRENT (and
        rows created while it ran that it archived too); check them by id. Returns the
        sentence for the run's message."""
        rows = [live.rows[i] for i in keep.live] + late
        if keep.out_of_scope:
            assert self.backup is not None
            rows += rows_from_backup(self.backup, keep.out_of_scope, self.kind)
        if not rows:
            return ""
        self.ops.recreate(as_current(rows))
        final = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        self.summary.counts_after = final.counts().as_dict()
        problems = kept_problems(self.kind, rows, final, seen)
        if problems:
            raise VerificationFailed("; ".join(problems))
        ids = [self.kind.row_id(r) for r in rows]
        self.summary.extra["kept CURRENT"] = (
            f"{len(keep.live) + len(late)} live, {len(keep.out_of_scope)} out of scope: "
            f"{name_ids(ids)}"
        )
        new_ids = "" if self.kind.recreate_keeps_ids else " (as new rows: new ids)"
        return (
            f" Kept CURRENT{new_ids}: {len(keep.live) + len(late)} live row(s) and "
            f"{len(keep.out_of_scope)} outside the scope, verified: {name_ids(ids)}."
        )

    @staticmethod
    def reason(exc: Exception) -> str:
        """An error as the sentence a rollback names."""
        return str(exc) if isinstance(exc, ReflexioError | RuntimeError) else repr(exc)

    def touched(self, expected: ExpectedState, keep: KeepPlan) -> TouchedIds:
        """Counts of the ids the upgrade touched, and the file naming each one."""
        assert self.backup is not None
        path = write_touched_ids(
            self.backup.manifest_name, expected, keep.ids, self.backup.store, self.discarded
        )
        return TouchedIds(
            promoted=len(expected.promoted),
            archived=len(expected.archived - keep.ids),
            deleted=len(expected.deleted),
            kept_current=len(keep.ids),
            discarded_stale=len(self.discarded),
            ids_file=path,
            live_file=self.live_backup.manifest_path if self.live_backup else None,
        )

    def after_upgrade(self, outcome: RegenerationOutcome) -> RegenerationOutcome:
        """Aggregation (playbooks) and the pass notification."""
        if getattr(self.params, "aggregate", False):
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

    # --- undo: put back what a failed upgrade did ------------------------------------------

    def saved_rows(self, ids: Collection[str]) -> Iterator[dict[str, Any]]:
        """The saved rows with these ids: from the live-rows file first (newer), then the
        backup."""
        wanted = set(ids)
        if self.live_backup is not None:
            for row in rows_from_backup(self.live_backup, wanted, self.kind):
                wanted.discard(self.kind.row_id(row))
                yield row
        assert self.backup is not None
        yield from rows_from_backup(self.backup, wanted, self.kind)

    def repair_to_backup(
        self,
        target: dict[str, Status],
        ours: frozenset[str],
        deleted: frozenset[str],
        steps: list[str],
    ) -> str:
        """Delete the rows this run created that are left, re-create the saved rows this
        run deleted and those in another status (never one gone for another reason);
        returns what still differs ('' when the rows equal the state before the upgrade,
        but for the rows that left for other reasons)."""
        known = frozenset(target) | ours
        now = self.ops.read(ReadRequest(statuses=STATUSES, live=LiveRule(known, None)))
        assert now.live is not None
        plan = plan_rollback(target, now.snapshot, ours, deleted)
        if plan.gone:
            steps.append(describe_gone(plan.gone))
        newer = [r for r in now.live.rows.values() if row_status(r) == "archived"]
        if newer:  # rows users created after the upgrade, archived by the downgrade
            self.ops.recreate(as_current(newer))
            steps.append(f"made {len(newer)} row(s) users created meanwhile CURRENT again")
        if plan.delete:
            steps.append(f"deleted {self.ops.delete(plan.delete)} row(s) this run created")
        wanted = plan.recreate
        if not self.kind.recreate_keeps_ids:  # re-created as new CURRENT rows
            wanted = frozenset(i for i in wanted if target[i] == "current")
        recreated = 0
        if wanted:
            recreated = self.ops.recreate(self.saved_rows(wanted))
            steps.append(f"re-created {recreated} row(s) from the saved rows")
        final = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        self.summary.counts_after = final.counts().as_dict()
        left = plan_rollback(target, final, ours, deleted)
        if self.kind.recreate_keeps_ids:
            return describe_residue(left)
        renewed = frozenset(i for i in left.recreate if target[i] == "current")
        if not (len(renewed) == recreated and not left.delete):
            return describe_residue(left)
        if recreated:
            steps.append(
                f"the {recreated} re-created row(s) have new ids (the server assigns them)"
            )
        gone = left.recreate - renewed
        if not gone:
            return ""
        self.residue_is_permanent = True
        return (
            f"{len(gone)} ARCHIVED row(s) the upgrade deleted cannot be re-created as ARCHIVED "
            f"(the server makes them CURRENT); they stay in the backup: {name_ids(gone)}"
        )

    def what_differs(
        self, target: dict[str, Status], ours: frozenset[str], deleted: frozenset[str]
    ) -> str:
        """What still differs from the state before the upgrade, read now, in words."""
        try:
            now = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        except (ReflexioError, RuntimeError) as exc:
            return f"The rows could not be read to say what differs ({exc})."
        self.summary.counts_after = now.counts().as_dict()
        left = plan_rollback(target, now, ours, deleted)
        return f"Still different: {describe_residue(left)}."

    def undo(
        self,
        reason: str,
        gate: GateOutcome | None,
        state: IdSnapshot,
        expected: ExpectedState | None = None,
    ) -> RegenerationOutcome:
        """A failed upgrade (state: the ids it was sent against): establish from the server
        what it did, then undo only that (core/rollback.py)."""
        if expected is None:
            expected = expected_after_upgrade(self.kind, state, self.only_affected_users)
        try:
            now = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        except (ReflexioError, RuntimeError) as exc:
            message = (
                f"The upgrade failed ({reason}) and the rows could not be read to establish "
                f"what it did ({self.reason(exc)}); nothing was changed back. When the server "
                f"answers, run restore-profiles with backup_file={self.summary.backup_path} "
                "(it acts on the ids this run touched only)."
            )
            return self.outcome(Decision.ERROR, message, gate=gate)
        effect = upgrade_effect(expected, now)
        if effect.nothing:
            return self.not_applied(reason, gate, effect)
        return self.roll_back(reason, gate, state, effect)

    def not_applied(
        self, reason: str, gate: GateOutcome | None, effect: UpgradeEffect
    ) -> RegenerationOutcome:
        """The upgrade changed nothing: no downgrade, no re-creation; the candidate is left
        as a gate-blocked run leaves it."""
        try:
            leftover = self.leave_candidate()
        except (ReflexioError, RuntimeError) as exc:
            self.left_unfinished = True
            leftover = (
                f"The candidate could not be cleaned up ({exc}); the next writer on this "
                "server does it from the run journal."
            )
        self.ops.emit(
            catalogue.EVENT_ROLLED_BACK,
            kind=self.kind.name,
            agent_version=self.kind.agent_version,
            reason=reason[:300],
            equal=True,
            path="not applied",
        )
        message = (
            f"Upgrade not applied: {reason}. The server shows nothing changed "
            f"({effect.describe()}), so nothing was changed back and no downgrade ran; "
            f"CURRENT and ARCHIVED are as before. {leftover} Backup: {self.summary.backup_path}."
        )
        return self.outcome(Decision.UPGRADE_NOT_APPLIED, message, gate=gate)

    def roll_back(
        self, reason: str, gate: GateOutcome | None, state: IdSnapshot, effect: UpgradeEffect
    ) -> RegenerationOutcome:
        """Put back what the upgrade did: the server's downgrade only where it provably
        swaps exactly this upgrade back, then every id that still differs is deleted (only
        rows this run created) or re-created from the saved rows (only rows this run
        deleted or tombstoned). Rows users created meanwhile stay."""
        target = self.rollback_target(state)
        ours = frozenset(state.pending)
        deleted = effect.expected.deleted | self.tombstoned(state)
        steps: list[str] = [f"the upgrade had applied {effect.describe()}"]
        if effect.downgrade_swaps_back:
            try:
                result = self.ops.downgrade(self.only_affected_users)
                steps.append(
                    "path: the server's downgrade (every row the upgrade archived, and no "
                    f"other, was ARCHIVED): {result.get('message')}; then repair by id"
                )
            except ReflexioError as exc:
                steps.append(f"downgrade failed ({exc}); repairing by id")
        else:
            steps.append("path: repair by id only, no downgrade (it would not swap back exactly)")
        try:
            residue = self.repair_to_backup(target, ours, deleted, steps)
        except (ReflexioError, RuntimeError) as exc:
            left = self.what_differs(target, ours, deleted)
            residue = f"the rollback stopped: {exc} {left}"
        steps.append(
            f"data DIFFERS from before the upgrade: {residue}"
            if residue
            else "data equals the state before the upgrade"
        )
        self.left_unfinished = bool(residue) and not self.residue_is_permanent
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

    # --- the repair of a run that died (its journal) -----------------------------------------

    def resume(self, entry: RunJournal) -> str:
        """Finish or undo the run `entry` describes, this engine standing in for it: its
        reruns stopped, then its candidate left as a gate-blocked run leaves it (step
        "candidate"), or its upgrade established from the server and undone where it did
        anything (step "upgrade"). Returns what was done; `left_unfinished` says whether
        the journal must stay."""
        self.entry = entry
        stopped = self.stop_reruns(entry)
        try:
            store, name = self.ops.locate_file(entry.backup)
            backup = open_backup(name, store)
            self.backup = info_of(backup)
        except BackupError as exc:
            if entry.step == "candidate" and self.kind.candidate_deleted_when_not_upgraded:
                # Deleting a profile candidate needs no saved row.
                return f"{stopped}{self.leave_candidate()}"
            raise BackupError(
                f"the run's backup cannot be read ({exc}); the repair needs it to put rows back"
            ) from None
        self.before = IdSnapshot()
        self.before.add(self.kind, backup.iter_rows())
        if entry.live:
            self.live_backup = self.open_saved(entry.live)
        if entry.step == "candidate":
            return f"{stopped}{self.leave_candidate()}"
        return f"{stopped}{self.resume_upgrade(entry)}"

    def open_saved(self, location: str) -> BackupInfo:
        """A backup file the journal names."""
        store, name = self.ops.locate_file(location)
        return info_of(open_backup(name, store))

    def stop_reruns(self, entry: RunJournal) -> str:
        """Stop the dead run's rerun if it still runs; Refused when another one runs."""
        running = self.ops.running_operation()
        if running is None:
            return ""
        if entry.operation_ids and running not in entry.operation_ids:
            raise Refused(
                f"A {self.kind.service} operation ({running}) the unfinished run did not start "
                "is in progress; nothing was repaired. Run again when it has finished."
            )
        return f"Its rerun ({running}): {self.ops.cancel_rerun(running)}. "

    def resume_upgrade(self, entry: RunJournal) -> str:
        """The dead run's upgrade: kept when it applied in full with no row to keep CURRENT
        (the gate had let it through), else undone from what the server shows."""
        assert entry.touched is not None
        touched = read_touched_ids(*reversed(self.ops.locate_file(entry.touched)))
        kept = frozenset(touched.get("kept_current", ()))
        promoted = frozenset(touched["promoted"])
        expected = ExpectedState(
            promoted=promoted,
            current=promoted,
            archived=frozenset(touched["archived"]) | kept,
            deleted=frozenset(touched["deleted"]),
        )
        now = self.ops.read(ReadRequest(statuses=STATUSES)).snapshot
        effect = upgrade_effect(expected, now)
        if effect.complete and not kept and not (promoted & set(now.pending)):
            return (
                f"Its upgrade had applied in full ({effect.describe()}), checked by id: kept "
                f"(the gate had let it through). Backup: {entry.backup}."
            )
        users = {**self.before.archived, **self.before.current, **now.archived}
        users |= {**now.pending, **now.current}
        state = IdSnapshot(
            current={i: users.get(i, "") for i in expected.archived},
            pending={i: users.get(i, "") for i in promoted},
            archived={i: users.get(i, "") for i in expected.deleted},
        )
        reason = f"the run that sent it (flow run {entry.flow_run_id}) died before verifying it"
        if effect.nothing:
            return self.not_applied(reason, None, effect).message
        return self.roll_back(reason, None, state, effect).message
