"""Manual-generation sweep: for each source, manual profile and playbook generation.

Order: the server's lock (flows/lock.py; another writer busy: ends Failed, nothing written;
a run journal left by a dead writer is repaired first) -> stall check (ends Failed, naming
the reason) -> prerequisites (config read, no writes; ends Failed with how to fix it) -> the
run journal (core/journal.py, kind "sweep": this run's parameters) -> per source, paced
manual_* calls with counts measured before and after each step, each step recorded in the
journal as it starts and as it ends -> a summary table artifact -> the journal removed. A
failing source does not stop the others; the run then ends Failed and names it. See
tasks/sweep.py for the server facts (H3, H8, H11, manual_trigger) behind each choice.

The journal is kept only when the run stops before it has tried every step (a SIGKILL, a
cancel, a flow timeout, a read that fails after its retries, a lost lock): the next writer
on the server then finishes the sweep (flows/sweep_repair.py). A step that failed on the
server ends the sweep Failed as before, without a journal: a sweep only adds CURRENT rows,
so it leaves nothing to undo, and the operator sweeps that source again.
"""

from collections.abc import Iterator
from functools import partial
from typing import Any, Protocol

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from core.journal import RunJournal
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import run_id
from flows._common import stalled as stalled_state
from flows.flat_params import flat_parameters
from flows.lock import ensure_still_held, holds_server_lock
from flows.params import SweepParams
from flows.stored_repair import run_logger
from reflexio_api import ReflexioSettings
from reflexio_api.models import OperationStatus, ServiceName
from tasks.journal import PrefectJournal, run_again_journal
from tasks.server import read_operation_status
from tasks.sweep import (
    H3_NOTE,
    H8_NOTE,
    SERVICES,
    Prerequisites,
    Snapshot,
    StepResult,
    SweepPlan,
    check_prerequisites,
    describe_error,
    diff_playbooks,
    diff_profiles,
    manual_generation,
    snapshot,
    stall_message,
    step_key,
    wait_until_idle,
)

ARTIFACT_KEY = "manual-sweep-summary"


class SweepOps(Protocol):
    """What a sweep does on its server (PrefectSweepOps; a fake in the unit tests)."""

    def stalled(self) -> str | None: ...
    def prerequisites(self, plan: SweepPlan) -> Prerequisites: ...
    def snapshot(self, kinds: list[str], agent_versions: list[str]) -> Snapshot: ...
    def generate(self, step: StepResult, spacing_s: float) -> StepResult: ...
    def operation(self, service: ServiceName) -> OperationStatus | None: ...
    def wait_until_idle(self, service: ServiceName) -> OperationStatus | None: ...
    def publish(self, steps: list[StepResult], notes: list[str]) -> None: ...
    def save(self, journal: RunJournal) -> None: ...
    def clear(self) -> None: ...


class PrefectSweepOps(PrefectJournal):
    """SweepOps as Prefect tasks on one server, its journal on the Prefect API."""

    def __init__(self, settings: ReflexioSettings, notification_block: str) -> None:
        super().__init__(settings.url, partial(ensure_still_held, settings.url))
        self.settings = settings
        self.notification_block = notification_block

    def stalled(self) -> str | None:
        return stall_message(self.settings, self.notification_block)

    def prerequisites(self, plan: SweepPlan) -> Prerequisites:
        return check_prerequisites(self.settings, plan)

    def snapshot(self, kinds: list[str], agent_versions: list[str]) -> Snapshot:
        return snapshot(self.settings, kinds, agent_versions)

    def generate(self, step: StepResult, spacing_s: float) -> StepResult:
        ensure_still_held(self.url)  # a lost lock stops the sweep here, its journal kept
        state = manual_generation(self.settings, step, spacing_s, return_state=True)
        if state.is_failed():
            exc = state.result(raise_on_failure=False)
            step.status = "failed"
            step.message = describe_error(exc) if isinstance(exc, BaseException) else str(exc)
            return step
        return state.result()

    def operation(self, service: ServiceName) -> OperationStatus | None:
        return read_operation_status(self.settings, service)

    def wait_until_idle(self, service: ServiceName) -> OperationStatus | None:
        return wait_until_idle(self.settings, service)

    def publish(self, steps: list[StepResult], notes: list[str]) -> None:
        description = "\n\n".join(
            [f"Manual generation sweep on {self.url}.", H8_NOTE, H3_NOTE, *notes]
        )
        create_table_artifact(
            key=ARTIFACT_KEY, table=[s.row() for s in steps], description=description
        )


def planned_steps(params: SweepParams, source: str) -> Iterator[StepResult]:
    """A source's steps, in the order the sweep runs them."""
    if "profiles" in params.kinds:
        yield StepResult(source, "profiles")
    if "playbooks" in params.kinds:
        for av in params.agent_versions:
            yield StepResult(source, "playbooks", agent_version=av)


def _measure(ops: SweepOps, params: SweepParams, before: Snapshot, step: StepResult) -> Snapshot:
    """Fill the step's counts from a listing after it; the snapshot the next step starts
    from."""
    if step.kind == "profiles":
        after = ops.snapshot(["profiles"], [])
        diff_profiles(before, after, step)
        return Snapshot(after.profiles, before.playbooks)
    after = ops.snapshot(["playbooks"], params.agent_versions)
    diff_playbooks(before, after, step)
    return Snapshot(before.profiles, after.playbooks)


def run_sweep(ops: SweepOps, params: SweepParams, journal: RunJournal) -> State:
    """The sweep itself: every step of `params` but those `journal.swept` names (done by a
    sweep that died, when a repair runs this). The journal is saved before the first
    manual generation and as each step starts and ends, and removed once every step was
    tried; Completed with the summary, or Failed naming what failed."""
    logger = run_logger()
    stalled = ops.stalled()
    if stalled:
        logger.error("%s Nothing was generated.", stalled)
        return stalled_state(f"{stalled} Nothing was generated.")

    prereq = ops.prerequisites(params.plan())
    if prereq.blocking:
        message = "Sweep not started, prerequisites missing:\n- " + "\n- ".join(prereq.blocking)
        logger.error("%s", message)
        return Failed(message=message)
    for note in prereq.notes:
        logger.info("%s", note)

    steps: list[StepResult] = []
    before = ops.snapshot(params.kinds, params.agent_versions)
    ops.save(journal)  # before the first write
    for source in params.sources:
        for step in planned_steps(params, source):
            key = step_key(step)
            if source in prereq.per_source:
                step.status, step.message = "failed", prereq.per_source[source]
            elif key in journal.swept:
                step.status = "skipped"
                step.message = f"done by the sweep that died (flow run {journal.flow_run_id})"
            else:
                previous = ops.operation(SERVICES[step.kind])
                after = int(previous.started_at) if previous is not None else 0
                journal = journal.sweep_started(key, after)
                ops.save(journal)
                step = ops.generate(step, params.spacing_s)
                journal = journal.sweep_ended(key, step.status == "ok")
                ops.save(journal)
                before = _measure(ops, params, before, step)
            steps.append(step)

    ops.publish(steps, prereq.notes)
    ops.clear()
    return _final(steps, params)


def _final(steps: list[StepResult], params: SweepParams) -> State:
    """Completed, or Failed naming the steps that failed; the summary as the state's data."""
    failed = [s for s in steps if s.status == "failed"]
    skipped = [step_key(s) for s in steps if s.status == "skipped"]
    summary: dict[str, Any] = {
        "steps": [s.row() for s in steps],
        "failed_sources": sorted({s.source for s in failed}),
        "call_starts": [s.started_at for s in steps if s.status != "skipped"],
        "spacing_s": params.spacing_s,
    }
    ran = len(steps) - len(skipped)
    done_before = (
        f"; {len(skipped)} step(s) the sweep that died had done were not run again "
        f"({', '.join(skipped)})"
        if skipped
        else ""
    )
    if failed:
        detail = "; ".join(
            f"{s.source} {s.kind}{' ' + s.agent_version if s.agent_version else ''}: {s.message}"
            for s in failed
        )
        message = (
            f"Sweep failed for source(s) {', '.join(summary['failed_sources'])} "
            f"({len(failed)} of {ran} step(s)); the other sources ran{done_before}. {detail}"
        )
        run_logger().error("%s", message)
        return Failed(message=message, data=summary)
    message = f"Swept {len(params.sources)} source(s), {ran} step(s){done_before}."
    run_logger().info("%s", message)
    return Completed(message=message, data=summary)


@flow(
    name="manual-generation-sweep",
    flow_run_name=run_names.sweep,
    timeout_seconds=FLOW_TIMEOUT_S["manual-generation-sweep"],
    validate_parameters=True,
    persist_result=True,  # the outcome is read from the API after the run (docs)
)
@flat_parameters(SweepParams)
@holds_server_lock
def manual_sweep(params: SweepParams) -> State:
    """Sweep the given sources; Completed with the summary, or Failed naming what failed."""
    settings = params.settings()
    journal = run_again_journal(settings.url, "sweep", run_id(), params.run_again())
    return run_sweep(PrefectSweepOps(settings, params.notification_block), params, journal)
