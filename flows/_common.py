"""What both regeneration flows share: the per-server lock and the early-exit helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.states import Failed, State

from flows.params import RegenerationParams
from gate import GateReport, Severity
from reflexio_api import ReflexioError, ReflexioSettings
from tasks import events
from tasks.domain import regeneration_lock_name
from tasks.gate import run_gate
from tasks.report import RunSummary
from tasks.server import OperationRunning

STALLED_STATE_NAME = "Stalled"


def stalled(message: str) -> State:
    """The end state of a run stopped by a stall: of type FAILED (non-zero exit, never a
    pass) but named "Stalled", so its event is `prefect.flow-run.Stalled` and the
    failed-run automation does not notify again: the stall itself is notified once."""
    return Failed(name=STALLED_STATE_NAME, message=message)


def gate_step(
    settings: ReflexioSettings,
    params: RegenerationParams,
    summary: RunSummary,
    candidate: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    kind: Literal["profiles", "playbooks"],
    artifact_prefix: str,
    **event_payload: Any,
) -> tuple[GateReport, bool]:
    """Run the gate (artifacts), note its sentence, emit gate passed/failed; returns the
    report and whether the upgrade is blocked (FAIL, or WARN when warnings are not allowed)."""
    report = run_gate(candidate, baseline, params.policy(), kind, artifact_prefix)
    summary.gate = report.summary_sentence()
    verdict = report.verdict
    blocked = verdict is Severity.FAIL or (verdict is Severity.WARN and not params.allow_warn)
    events.emit(
        events.GATE_FAILED if blocked else events.GATE_PASSED,
        settings.url,
        kind=kind,
        verdict=verdict.value,
        candidate_rows=report.candidate_rows,
        baseline_rows=report.baseline_rows,
        **event_payload,
    )
    return report, blocked


class RegenerationBusy(RuntimeError):
    """Another regeneration holds this server's lock."""


class Refused(RuntimeError):
    """The run refuses to go on; the message says why and what to do."""


def run_regeneration(
    settings: ReflexioSettings,
    summary: RunSummary,
    lock_timeout_s: float,
    summary_key: str,
    regenerate: Callable[[], State],
) -> State:
    """Hold the server's lock around ``regenerate``; turn refusals and Reflexio errors into
    a Failed state that says why; always publish the run summary."""
    state: State
    try:
        with regeneration_lock(settings, lock_timeout_s):
            state = regenerate()
    except (Refused, OperationRunning, RegenerationBusy) as exc:
        summary.decision = str(exc)
        state = Failed(message=summary.decision)
    except ReflexioError as exc:
        summary.decision = f"Stopped on a Reflexio error: {exc}"
        state = Failed(message=summary.decision)
    finally:
        if summary.decision == "not decided":
            summary.decision = "Crashed before deciding; see the logs."
        summary.publish(summary_key)
        print(summary.decision)
    return state


def lock_name(settings: ReflexioSettings) -> str:
    """Global concurrency limit name: one regeneration per Reflexio server."""
    return regeneration_lock_name(settings.url)


def ensure_limit(name: str) -> None:
    """Create the limit (1 slot) when missing: a missing limit would only warn (no lock)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.upsert_global_concurrency_limit_by_name(name, limit=1)


@contextmanager
def regeneration_lock(settings: ReflexioSettings, timeout_s: float) -> Iterator[None]:
    """Hold this server's regeneration slot for the whole run (both flows share it)."""
    name = lock_name(settings)
    ensure_limit(name)
    try:
        # The lease is renewed while the run lives; a killed run frees the slot after 60 s
        # (Prefect's default, 300 s, blocked the next run for five minutes).
        ctx = concurrency(name, occupy=1, timeout_seconds=timeout_s, lease_duration=60, strict=True)
        ctx.__enter__()
    except TimeoutError:
        raise RegenerationBusy(
            f"Another regeneration on {settings.url} held the '{name}' slot for more than "
            f"{timeout_s:g} s; not starting a second one. Try again when it has finished."
        ) from None
    try:
        yield
    finally:
        ctx.__exit__(None, None, None)
