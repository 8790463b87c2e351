"""Manual-generation sweep: for each source, manual profile and playbook generation.

Order: the server's lock (flows/lock.py; another writer busy: ends Failed, nothing written)
-> stall check (ends Failed, naming the reason) -> prerequisites (config read, no
writes; ends Failed with how to fix it) -> per source, paced manual_* calls with counts
measured before and after each step -> a summary table artifact. A failing source does not
stop the others; the run then ends Failed and names it. See tasks/sweep.py for the server
facts (H3, H8, H11, manual_trigger) behind each choice.
"""

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import stalled as stalled_state
from flows.lock import holds_server_lock
from flows.params import SweepParams
from tasks.sweep import (
    H3_NOTE,
    H8_NOTE,
    StepResult,
    check_prerequisites,
    describe_error,
    diff_playbooks,
    diff_profiles,
    manual_generation,
    snapshot,
    stall_message,
)

ARTIFACT_KEY = "manual-sweep-summary"


def _run_step(settings: Any, step: StepResult, spacing_s: float) -> StepResult:
    state = manual_generation(settings, step, spacing_s, return_state=True)
    if state.is_failed():
        exc = state.result(raise_on_failure=False)
        step.status = "failed"
        step.message = describe_error(exc) if isinstance(exc, BaseException) else str(exc)
        return step
    return state.result()


def _publish(steps: list[StepResult], notes: list[str], url: str) -> None:
    description = "\n\n".join([f"Manual generation sweep on {url}.", H8_NOTE, H3_NOTE, *notes])
    create_table_artifact(key=ARTIFACT_KEY, table=[s.row() for s in steps], description=description)


@flow(
    name="manual-generation-sweep",
    flow_run_name=run_names.sweep,
    timeout_seconds=FLOW_TIMEOUT_S["manual-generation-sweep"],
    validate_parameters=True,
)
@holds_server_lock
def manual_sweep(params: SweepParams) -> State:
    """Sweep the given sources; Completed with the summary, or Failed naming what failed."""
    logger = get_run_logger()
    settings = params.settings()

    stalled = stall_message(settings, params.notification_block)
    if stalled:
        logger.error("%s Nothing was generated.", stalled)
        return stalled_state(f"{stalled} Nothing was generated.")

    prereq = check_prerequisites(settings, params.plan())
    if prereq.blocking:
        message = "Sweep not started, prerequisites missing:\n- " + "\n- ".join(prereq.blocking)
        logger.error("%s", message)
        return Failed(message=message)
    for note in prereq.notes:
        logger.info("%s", note)

    steps: list[StepResult] = []
    before = snapshot(settings, params.kinds, params.agent_versions)
    for source in params.sources:
        if source in prereq.per_source:
            for kind in params.kinds:
                steps.append(
                    StepResult(source, kind, status="failed", message=prereq.per_source[source])
                )
            continue
        if "profiles" in params.kinds:
            step = _run_step(settings, StepResult(source, "profiles"), params.spacing_s)
            after = snapshot(settings, ["profiles"], [])
            diff_profiles(before, after, step)
            before = type(before)(after.profiles, before.playbooks)
            steps.append(step)
        if "playbooks" in params.kinds:
            for av in params.agent_versions:
                step = _run_step(
                    settings, StepResult(source, "playbooks", agent_version=av), params.spacing_s
                )
                after = snapshot(settings, ["playbooks"], params.agent_versions)
                diff_playbooks(before, after, step)
                before = type(before)(before.profiles, after.playbooks)
                steps.append(step)

    _publish(steps, prereq.notes, settings.url)
    failed = [s for s in steps if s.status == "failed"]
    summary = {
        "steps": [s.row() for s in steps],
        "failed_sources": sorted({s.source for s in failed}),
        "call_starts": [s.started_at for s in steps],
        "spacing_s": params.spacing_s,
    }
    if failed:
        detail = "; ".join(
            f"{s.source} {s.kind}{' ' + s.agent_version if s.agent_version else ''}: {s.message}"
            for s in failed
        )
        message = (
            f"Sweep failed for source(s) {', '.join(summary['failed_sources'])} "
            f"({len(failed)} of {len(steps)} step(s)); the other sources ran. {detail}"
        )
        logger.error("%s", message)
        return Failed(message=message, data=summary)
    message = f"Swept {len(params.sources)} source(s), {len(steps)} step(s)."
    logger.info("%s", message)
    return Completed(message=message, data=summary)
