"""Manual-generation sweep: parameters, prerequisites, pacing, snapshots and per-step tasks.

What the real server (reflexio-ai 0.2.32) does, and why the code looks like this:

- Manual generation runs whatever `profile_extractor_config.manual_trigger` says: the server
  builds its generation service with `allow_manual_trigger=True`, and `manual_trigger=True`
  only means "skip automatic extraction on publish". So `manual_trigger` is NOT required for
  a sweep; `require_manual_trigger=True` asserts it for servers run in "sweeps only" mode.
- `source` does not filter interactions (H8): a step stamps its source on profiles made from
  every source's interactions. Counts are measured from listings before and after each step
  (H3: `profiles_generated` / `playbooks_generated` count existing rows).
- Rate limits (H11) are per client IP and per route: 5/min on each manual_* route, no
  Retry-After header. Calls are paced through Prefect's `rate_limit` on one limit per route
  of the server, shared by every process on the same Prefect API (tasks/pacing.py): two
  sweeps one after the other, or from two deployments, keep the server's pace together.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from deployments.catalogue import PACED_ROUTES
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.errors import ReflexioError
from reflexio_api.models import OperationStatus, ServiceName
from tasks.pacing import paced_call, pacer_for
from tasks.retry import retry_options

SweepKind = Literal["profiles", "playbooks"]
SERVICES: dict[SweepKind, ServiceName] = {
    "profiles": "profile_generation",
    "playbooks": "playbook_generation",
}
"""The server's operation slot each kind's manual generation shows itself in."""
IDLE_WAIT_S = 600.0
"""How long a repair waits for the manual generation a dead sweep left running."""
IDLE_POLL_S = 3.0
MANUAL_PROFILES_ROUTE = "manual_profile_generation"
MANUAL_PLAYBOOKS_ROUTE = "manual_playbook_generation"
SERVER_MANUAL_LIMIT_PER_MIN = PACED_ROUTES[MANUAL_PROFILES_ROUTE]
H8_NOTE = (
    "H8: the server's `source` does not filter interactions. A source's profile step reads "
    "the recent interactions of EVERY source and stamps the given source on what it makes, "
    "so 'added' counts what the step changed, not what came from that source's interactions."
)
H3_NOTE = (
    "H3: `server_reported` is the server's own count (it counts existing rows); 'added' and "
    "'removed' are measured by listing CURRENT rows by id before and after each step."
)


# --- stall check ---------------------------------------------------------------------------


def stall_message(settings: ReflexioSettings, notification_block: str) -> str | None:
    """None when learning is not stalled; else the sentence the run must end with.

    Uses tasks.stall.check_stall (which also notifies once per stall) when it exists;
    otherwise reads GET /stall_state directly.
    """
    try:
        from tasks.stall import check_stall
    except ImportError:
        with ReflexioClient(settings) as client:
            state = client.get_stall_state()
        if not state.stalled:
            return None
        since = f" since {state.stalled_at.isoformat()}" if state.stalled_at else ""
        return (
            f"Learning is stalled: {state.reason or 'unknown reason'}{since} on {settings.url}. "
            "Fix the LLM provider key or billing of the Reflexio server."
        )
    stall, note = check_stall(settings, notification_block)
    if stall is None:
        return None
    return f"{stall.message} ({note})" if note else stall.message


# --- prerequisites -------------------------------------------------------------------------


@dataclass
class Prerequisites:
    """What blocks the whole sweep, what blocks single sources, and what is worth saying."""

    blocking: list[str] = field(default_factory=list)
    per_source: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


MANUAL_TRIGGER_HOWTO = (
    "profile_extractor_config.manual_trigger is false on {url}, and require_manual_trigger "
    "is set. To enable it, send the WHOLE profile_extractor_config back with manual_trigger "
    "true (update_config merges top-level keys only: a partial object would drop the "
    "extraction prompt):\n"
    "  from reflexio_api import ReflexioClient, ReflexioSettings\n"
    "  with ReflexioClient(ReflexioSettings(url='{url}')) as c:\n"
    "      pec = c.get_config()['profile_extractor_config']\n"
    "      c.update_config({{'profile_extractor_config': {{**pec, 'manual_trigger': True}}}})\n"
    "i.e. POST {url}/api/update_config with body "
    '{{"profile_extractor_config": {{<every field of the current object>, '
    '"manual_trigger": true}}}}. '
    "Note: manual_trigger true also turns OFF automatic extraction on publish. Or run the "
    "sweep with require_manual_trigger=false: manual generation works either way."
)
WINDOW_HOWTO = (
    "window_size is not set on {url}: manual generation reads a window of recent "
    "interactions and has nothing to read. Set it (stride_size <= window_size), e.g. "
    'POST {url}/api/update_config with {{"window_size": 10, "stride_size": 8}} '
    "(client.update_config({{'window_size': 10, 'stride_size': 8}}))."
)
EXTRACTOR_HOWTO = (
    "{key} is not configured on {url}, so manual {kind} generation has no extractor to run. "
    'Set it with POST {url}/api/update_config {{"{key}": {{"extraction_definition_prompt": '
    '"..."}}}}, or leave {kind} out of kinds.'
)


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do, as the prerequisites need it."""

    sources: list[str]
    kinds: list[SweepKind]
    require_manual_trigger: bool


def evaluate_prerequisites(
    config: dict[str, Any], params: SweepPlan, url: str, running: list[str]
) -> Prerequisites:
    """Pure check of the server config (never logged: it may hold credentials)."""
    found = Prerequisites()
    for service in running:
        found.blocking.append(
            f"A {service} operation is in progress on {url}; the server refuses manual "
            "generation meanwhile. Run the sweep after it has finished."
        )
    window = config.get("window_size")
    if not isinstance(window, int) or window <= 0:
        found.blocking.append(WINDOW_HOWTO.format(url=url))
    extractors = {
        "profiles": "profile_extractor_config",
        "playbooks": "user_playbook_extractor_config",
    }
    for kind in params.kinds:
        key = extractors[kind]
        section = config.get(key)
        if not isinstance(section, dict):
            found.blocking.append(EXTRACTOR_HOWTO.format(key=key, url=url, kind=kind))
            continue
        enabled = section.get("request_sources_enabled")
        if enabled:
            for source in params.sources:
                if source not in enabled:
                    found.per_source.setdefault(
                        source,
                        f"source '{source}' is not in {key}.request_sources_enabled "
                        f"{sorted(enabled)}: the server would skip its extractor. Add it "
                        "there or drop the source from the sweep.",
                    )
    pec = config.get("profile_extractor_config")
    if "profiles" in params.kinds and isinstance(pec, dict):
        if pec.get("manual_trigger"):
            found.notes.append(
                "manual_trigger is true: extraction runs only on manual/rerun triggers."
            )
        elif params.require_manual_trigger:
            found.blocking.append(MANUAL_TRIGGER_HOWTO.format(url=url))
        else:
            found.notes.append(
                "manual_trigger is false: extraction also runs automatically on publish; "
                "the sweep adds window-sized extraction on top (the server runs manual "
                "generation either way)."
            )
    return found


@task(name="check-sweep-prerequisites", cache_policy=NO_CACHE, **retry_options())
def check_prerequisites(settings: ReflexioSettings, params: SweepPlan) -> Prerequisites:
    """Read config and operation slots; no writes."""
    with ReflexioClient(settings) as client:
        config = client.get_config()
        running = []
        for service in ("profile_generation", "playbook_generation"):
            if client.running_operation(service) is not None:  # type: ignore[arg-type]
                running.append(service)
    return evaluate_prerequisites(config, params, settings.url, running)


# --- snapshots and steps -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """CURRENT rows by id: profiles (id -> source) and user playbooks (id -> (av, source))."""

    profiles: dict[str, str | None]
    playbooks: dict[int, tuple[str, str | None]]


@task(name="snapshot-current-rows", cache_policy=NO_CACHE, **retry_options())
def snapshot(settings: ReflexioSettings, kinds: list[str], agent_versions: list[str]) -> Snapshot:
    """List every CURRENT row of the kinds swept (complete listings; get_all_profiles is
    limited to 30/min, the client waits out a 429)."""
    with ReflexioClient(settings) as client:
        profiles: dict[str, str | None] = {}
        playbooks: dict[int, tuple[str, str | None]] = {}
        if "profiles" in kinds:
            rows = client.list_profiles("current")
            profiles = {r.profile_id: r.source for r in rows}
        if "playbooks" in kinds:
            for av in agent_versions:
                for pb in client.list_user_playbooks("current", agent_version=av):
                    playbooks[pb.user_playbook_id] = (pb.agent_version, pb.source)
    return Snapshot(profiles, playbooks)


@dataclass
class StepResult:
    """One manual generation call and what it changed."""

    source: str
    kind: SweepKind
    agent_version: str = ""
    status: Literal["ok", "failed", "skipped"] = "ok"
    stamped_before: int = 0
    stamped_after: int = 0
    added: int = 0
    removed: int = 0
    server_reported: int | None = None
    rate_limited: int = 0
    waited_s: float = 0.0
    started_at: float | None = None
    message: str = ""

    def row(self) -> dict[str, Any]:
        """The summary table row."""
        return {
            "source": self.source,
            "kind": self.kind,
            "agent_version": self.agent_version or "-",
            "status": self.status,
            "current_stamped_before": self.stamped_before,
            "current_stamped_after": self.stamped_after,
            "added": self.added,
            "removed": self.removed,
            "server_reported (H3)": "-" if self.server_reported is None else self.server_reported,
            "http_429": self.rate_limited,
            "paced_wait_s": round(self.waited_s, 1),
            "message": self.message,
        }


def step_key(step: StepResult) -> str:
    """How the run journal names a step."""
    return f"{step.source}/{step.kind}/{step.agent_version}"


def shows_step(status: OperationStatus | None, step: StepResult, since: int) -> bool:
    """Whether a service's slot shows this step's manual generation: started after `since`,
    the slot's last start before the step was sent (both the server's clock)."""
    if status is None:
        return False
    sent = status.request_params
    return (
        sent.get("mode") == "manual_regular"
        and sent.get("source") == step.source
        and (step.kind == "profiles" or sent.get("agent_version") == step.agent_version)
        and status.started_at > since
    )


@task(name="wait-for-generation-to-end", cache_policy=NO_CACHE, **retry_options())
def wait_until_idle(
    settings: ReflexioSettings, service: ServiceName, timeout_s: float = IDLE_WAIT_S
) -> OperationStatus | None:
    """The service's slot once no operation is in progress, or at the deadline (then still
    in progress)."""
    deadline = time.monotonic() + timeout_s
    with ReflexioClient(settings) as client:
        while True:
            status = client.get_operation_status(service)
            if status is None or status.status != "in_progress" or time.monotonic() > deadline:
                return status
            time.sleep(IDLE_POLL_S)


def diff_profiles(before: Snapshot, after: Snapshot, step: StepResult) -> None:
    """Fill counts of a profile step (stamped = CURRENT rows carrying the step's source)."""
    step.stamped_before = Counter(before.profiles.values())[step.source]
    step.stamped_after = Counter(after.profiles.values())[step.source]
    step.added = len(after.profiles.keys() - before.profiles.keys())
    step.removed = len(before.profiles.keys() - after.profiles.keys())


def diff_playbooks(before: Snapshot, after: Snapshot, step: StepResult) -> None:
    """Fill counts of a playbook step of one agent_version."""

    def ids(snap: Snapshot) -> set[int]:
        return {i for i, (av, _) in snap.playbooks.items() if av == step.agent_version}

    def stamped(snap: Snapshot) -> int:
        return sum(
            1
            for av, src in snap.playbooks.values()
            if av == step.agent_version and src == step.source
        )

    step.stamped_before, step.stamped_after = stamped(before), stamped(after)
    step.added = len(ids(after) - ids(before))
    step.removed = len(ids(before) - ids(after))


@task(name="manual-generation", cache_policy=NO_CACHE, retries=0)
def manual_generation(settings: ReflexioSettings, step: StepResult, spacing_s: float) -> StepResult:
    """One paced manual_* call. Not retried by Prefect: a 429 is waited out inside, any
    other fault fails this step only (a repeated generation after a timeout could run twice)."""
    logger = get_run_logger()
    route = MANUAL_PROFILES_ROUTE if step.kind == "profiles" else MANUAL_PLAYBOOKS_ROUTE
    pacer = pacer_for(settings.url, route, spacing_s)
    with ReflexioClient(settings) as client:
        if step.kind == "profiles":
            done = paced_call(pacer, lambda: client.manual_profile_generation(source=step.source))
            step.server_reported = done.result.profiles_generated
        else:
            done = paced_call(
                pacer,
                lambda: client.manual_playbook_generation(step.agent_version, source=step.source),
            )
            step.server_reported = done.result.playbooks_generated
    step.rate_limited, step.waited_s, step.started_at = (
        done.rate_limited,
        done.waited_s,
        done.started_at,
    )
    logger.info(
        "manual %s generation for source %s%s: server says %r",
        step.kind,
        step.source,
        f" (agent_version {step.agent_version})" if step.agent_version else "",
        done.result.msg,
    )
    return step


def describe_error(exc: BaseException) -> str:
    """A one-line reason (our client's messages are secret-free and traceback-free)."""
    if isinstance(exc, ReflexioError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
