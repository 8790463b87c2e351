"""What every regeneration flow shares: the per-server lock, the run wrapper that turns an
outcome into the flow's final state, and the run id."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.context import get_run_context
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Failed, State

from core.backup import BackupError
from core.kinds import Kind
from core.listing import ListingNotProven
from core.outcome import Decision, RegenerationOutcome
from deployments import catalogue
from flows.engine import Engine, Refused
from flows.params import RegenerationParams
from reflexio_api import IncompleteListing, ReflexioError, ReflexioSettings
from tasks.ops import PrefectOps
from tasks.report import RunSummary
from tasks.server import OperationRunning

STALLED_STATE_NAME = "Stalled"


class RegenerationBusy(RuntimeError):
    """Another regeneration holds this server's lock."""


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
    """Completed when the run did what was asked; Stalled on a stall; else Failed. The
    outcome is the state's data."""
    if outcome.succeeded:
        return Completed(message=outcome.message, data=outcome)
    if outcome.decision is Decision.STALLED:
        return stalled(outcome.message, outcome)
    return Failed(message=outcome.message, data=outcome)


def run_regeneration(kind: Kind, params: RegenerationParams, title: str) -> State:
    """Hold the server's lock around the engine; refusals and Reflexio errors become an
    outcome that says why; the run summary is always published."""
    settings = params.settings()
    summary = RunSummary(title=title, server=settings.url)
    engine = Engine(
        PrefectOps(settings, kind, params.notification_block), params, summary, run_id()
    )
    outcome: RegenerationOutcome | None = None
    try:
        with regeneration_lock(settings, params.lock_timeout_s):
            outcome = engine.run()
    except (
        Refused,
        OperationRunning,
        RegenerationBusy,
        ListingNotProven,
        IncompleteListing,
        BackupError,
    ) as exc:
        outcome = engine.outcome(Decision.REFUSED, str(exc))
    except ReflexioError as exc:
        outcome = engine.outcome(Decision.ERROR, f"Stopped on a Reflexio error: {exc}")
    finally:
        if outcome is None:
            summary.decision = "Crashed before deciding; see the logs."
        summary.publish(f"{kind.artifact_prefix(settings.url)}-summary")
        print(summary.decision)
    return final_state(outcome)


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
    name = catalogue.lock_name(settings.url)
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
