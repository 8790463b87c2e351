"""What every regeneration flow shares: the run wrapper that holds the server's lock and
turns an outcome into the flow's final state, and the run id."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prefect import get_run_logger
from prefect.context import get_run_context
from prefect.states import Completed, Failed, State

from core.backup import BackupError
from core.kinds import Kind
from core.listing import ListingNotProven
from core.outcome import Decision, RegenerationOutcome
from core.regeneration import Engine, Refused
from flows.golden_stage import golden_first
from flows.lock import Held, ServerBusy, ensure_still_held, lock_busy, server_lock
from flows.params import RegenerationParams
from flows.stored_repair import NotRepaired
from reflexio_api import IncompleteListing, ReflexioError
from tasks.backups import prune_backups
from tasks.journal import PrefectJournal
from tasks.ops import PrefectOps
from tasks.report import RunSummary
from tasks.server import OperationRunning

STALLED_STATE_NAME = "Stalled"
DRY_RUN_STATE_NAME = "DryRun"


def run_id() -> str:
    """This flow run's id ('local' outside a run)."""
    try:
        return str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:
        return "local"


def stalled(message: str, data: object = None) -> State:
    """The end state of a run stopped by a stall: of type FAILED (non-zero exit, never a
    pass) but named "Stalled", so its event is `prefect.flow-run.Stalled` and the
    failed-run automation does not notify again: the stall itself is notified once."""
    return Failed(name=STALLED_STATE_NAME, message=message, data=data)


def final_state(outcome: RegenerationOutcome) -> State:
    """Completed when the run did what was asked, named "DryRun" for a dry run (its event,
    `prefect.flow-run.DryRun`, neither starts the playbook nightly nor counts as a nightly
    done); Stalled on a stall; else Failed. The outcome is the state's data."""
    if outcome.decision is Decision.DRY_RUN:
        return Completed(name=DRY_RUN_STATE_NAME, message=outcome.message, data=outcome)
    if outcome.succeeded:
        return Completed(message=outcome.message, data=outcome)
    if outcome.decision is Decision.STALLED:
        return stalled(outcome.message, outcome)
    return Failed(message=outcome.message, data=outcome)


def apply_retention(params: RegenerationParams, url: str, run_id: str, summary: RunSummary) -> None:
    """Delete the server's backups past backup_retention_days (under its lock, so that no
    restore of this server reads them meanwhile); a failure is noted, never fatal."""
    if not params.backup_retention_days:
        return
    try:
        summary.note(prune_backups(params.backup_dir, url, params.backup_retention_days, run_id))
    except Exception as exc:
        summary.note(f"Retention: old backups were not pruned ({exc}); the next run tries again.")


REFUSALS = (Refused, OperationRunning, ListingNotProven, IncompleteListing, BackupError)
"""What makes an engine step stop before writing: the run ends REFUSED, saying why."""


def make_engine(
    kind: Kind, params: RegenerationParams, title: str, journaled: bool = True
) -> Engine:
    """An engine for one kind on the params' server, its effects as Prefect tasks; its run
    journal on the Prefect API unless the caller keeps its own record (`journaled=False`:
    the prompt check)."""
    settings = params.settings()
    summary = RunSummary(title=title, server=settings.url)
    guard = partial(ensure_still_held, settings.url)
    ops = PrefectOps(settings, kind, params.notification_block, guard)
    journal = PrefectJournal(settings.url, guard) if journaled else None
    return Engine(ops, params, summary, run_id(), journal=journal)


def run_step(engine: Engine, step: Callable[[], RegenerationOutcome]) -> RegenerationOutcome:
    """One engine step; refusals and Reflexio errors become an outcome that says why."""
    try:
        return step()
    except REFUSALS as exc:
        return engine.outcome(Decision.REFUSED, str(exc))
    except ReflexioError as exc:
        return engine.outcome(Decision.ERROR, f"Stopped on a Reflexio error: {exc}")


def publish_summary(engine: Engine) -> None:
    """The run summary artifact of the engine's kind on its server."""
    engine.summary.publish(f"{engine.kind.artifact_prefix(engine.ops.url)}-summary")
    get_run_logger().info("Decision: %s", engine.summary.decision)


def run_regeneration(kind: Kind, params: RegenerationParams, title: str) -> State:
    """Hold the server's lock around the engine, the golden set first when the run has a
    golden file (flows/golden_stage.py: under the lock, so that the config it reads is the
    server's own, not a prompt check's candidate); refusals and Reflexio errors become an
    outcome that says why; the run summary is always published."""
    engine = make_engine(kind, params, title)
    summary = engine.summary
    outcome: RegenerationOutcome | None = None
    held: Held | None = None
    busy = False
    try:
        with server_lock(engine.ops.url, params.lock_timeout_s) as held:
            outcome = golden_first(engine, params) or run_step(engine, engine.run)
            if held.repaired:  # an unfinished prompt check was undone first: say so
                summary.note(held.repaired)
                outcome.message = f"{held.repaired} {outcome.message}"
            if outcome.succeeded:
                apply_retention(params, engine.ops.url, engine.run_id, summary)
    except (ServerBusy, NotRepaired) as exc:
        busy = isinstance(exc, ServerBusy)
        outcome = engine.outcome(Decision.REFUSED, str(exc))
    finally:
        if held is not None and (lost := held.lost_note()):
            summary.note(lost)
        if outcome is None:
            summary.decision = "Crashed before deciding; see the logs."
        publish_summary(engine)
    return lock_busy(outcome.message, outcome) if busy else final_state(outcome)
