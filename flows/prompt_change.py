"""Prompt change (what CI runs): try a candidate Reflexio config, regenerate, gate, decide.

with a golden file, the golden set on a scratch server first (flows/golden_stage.py: a
candidate below the recall floor fails there, the server untouched) -> the server's lock
(flows/lock.py, held to the end; taking it first undoes an earlier check that died) -> stall
check -> the check's record on the Prefect API: the original config, the PENDING ids
already there, the CURRENT playbooks (tasks/check_record.py) -> apply the candidate ->
every gate: profiles, then the playbooks of an agent_version -> decide.

Each kind runs the engine's phases up to its gate (prepare -> candidate -> gate,
core/regeneration.py); without ``promote`` they run dry, and with it the check's own step
keeps each candidate the gate let through PENDING (`KindRun`). Only when every gate passed
does each kind run the engine's promote and verify phases, profiles then playbooks; when
one upgrade fails, the engine's undo rolls back the kinds already upgraded: both kinds are
promoted, or neither. Aggregation follows a promotion.

When the candidate is not promoted the check undoes itself exactly as the next run on the
server would undo a check that died (core/check_undo.py): original config back, the check's
PENDING rows deleted, CURRENT playbooks the rerun tombstoned (H6) re-created from the record
(same content, new ids). The record is removed once the config is back, or once the
candidate is promoted; a check killed on the way leaves it for the next run
(flows/check_repair.py).

The verdict is the flow's final state and, through ``flows.cli``, the process exit code.
"""

import hashlib
import json
import socket
import time
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from core.check_record import CheckKind, CheckRecord, UpgradeStarted
from core.check_undo import Undo
from core.identity import server_key
from core.kinds import PROFILES, user_playbooks
from core.outcome import Decision, RegenerationOutcome
from core.regeneration import Engine, Judged
from deployments import catalogue
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import STALLED_STATE_NAME, make_engine, publish_summary, run_id, run_step
from flows.check_repair import undo_and_forget
from flows.flat_params import flat_parameters
from flows.golden_stage import GoldenResult, GoldenStop, Stop, golden_stage
from flows.lock import ServerBusy, lock_busy, server_lock
from flows.params import PlaybookRegenerationParams, PromptChangeParams, RegenerationParams
from flows.stored_repair import NotRepaired
from reflexio_api import ReflexioError, ReflexioSettings
from tasks.check_record import delete_record, save_record
from tasks.config import apply_config, read_config
from tasks.server import list_profiles, list_user_playbooks, run_playbook_aggregation
from tasks.stall import check_stall


class Verdict(IntEnum):
    """The prompt check's outcome; the value is the CLI's exit code."""

    PASS = 0
    FAIL = 1
    STALL = 2
    BAD_INPUT = 3
    ERROR = 4
    BUSY = 5


REPORT_TITLE = "# Prompt check: "


def report_title(verdict: Verdict) -> str:
    """The report's first line: it names the verdict (`verdict_of` reads it back)."""
    return f"{REPORT_TITLE}{verdict.name}"


def verdict_of(report: str) -> Verdict | None:
    """The verdict a report's first line names (None: not a prompt-check report)."""
    first = report.split("\n", 1)[0]
    name = first.removeprefix(REPORT_TITLE)
    return Verdict[name] if first != name and name in Verdict.__members__ else None


class ConfigFileError(ValueError):
    """The candidate config is not a JSON/YAML mapping."""


def load_candidate_config(text: str) -> dict[str, Any]:
    """Read a candidate config's text (JSON when it starts with '{', else YAML, a mapping);
    clear error when it is unusable. The text itself is never in the message."""
    kind = "JSON" if text.lstrip().startswith("{") else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(_invalid(kind, exc.lineno, exc.colno)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigFileError(_invalid(kind, line, column)) from None
    if not isinstance(data, dict) or not data:
        raise ConfigFileError(
            "The candidate config must be a non-empty mapping of Reflexio config fields "
            f"(e.g. profile_extractor_config: ...), not {type(data).__name__}."
        )
    return data


def _invalid(kind: str, line: int | None, column: int | None) -> str:
    at = f" at line {line}, column {column}" if line else ""
    return f"The candidate config is not valid {kind}{at}. Fix it and run again."


def describe_config(text: str) -> str:
    """What names a candidate config in a report without showing it (it may hold
    credentials): its size and the start of its SHA-256."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{len(text.splitlines())} lines, sha256 {digest}"


class PromptCheckResult(BaseModel):
    """What CI needs: the verdict and a Markdown report."""

    verdict: Verdict
    message: str
    report_markdown: str


def classify(outcomes: list[RegenerationOutcome]) -> Verdict:
    """The worst outcome among the regenerations (none: PASS)."""
    if any(o.decision is Decision.STALLED for o in outcomes):
        return Verdict.STALL
    return Verdict.PASS if all(o.succeeded for o in outcomes) else Verdict.FAIL


Runs = list[tuple[str, RegenerationOutcome]]
"""Each regeneration's name and latest outcome, in the order they ran."""


@dataclass
class KindRun:
    """One kind the check regenerates: its engine, and the candidate its gate let through,
    kept PENDING until every kind's gate has passed."""

    name: str
    engine: Engine
    kept: Judged | None = None

    def gate(self) -> RegenerationOutcome:
        """The engine's phases up to its gate (a dry run ends there), then, in place of
        promote and verify, the candidate kept PENDING."""
        return run_step(self.engine, partial(self.engine.run_to, self.keep))

    def keep(self, judged: Judged) -> RegenerationOutcome:
        """Leave the candidate the gate let through PENDING, untouched, for `promote`."""
        self.kept = judged
        message = (
            f"Gate verdict {judged.gate.verdict}: the candidate's {len(judged.state.pending)} "
            f"PENDING {self.engine.kind.label} are kept for an upgrade decided later; "
            "nothing was upgraded."
        )
        return self.engine.outcome(Decision.CANDIDATE_KEPT, message, gate=judged.gate)

    def promote(self) -> RegenerationOutcome:
        """The engine's promote and verify phases for the kept candidate, every status read
        again first (rows users wrote since the gate are live rows)."""
        return run_step(self.engine, self._read_again_and_promote)

    def _read_again_and_promote(self) -> RegenerationOutcome:
        assert self.kept is not None
        self.kept = self.engine.read_again(self.kept)
        return self.engine.promote_and_verify(self.kept)

    def undo(self, reason: str) -> RegenerationOutcome:
        """The engine's undo of what `promote` upgraded and verified (another kind could
        not be upgraded): the rollback a failed verification gets."""
        assert self.kept is not None
        undo = partial(self.engine.undo, reason, self.kept.gate, self.kept.state)
        return run_step(self.engine, undo)


def _kind_runs(params: PromptChangeParams, settings: ReflexioSettings) -> list[KindRun]:
    """One regeneration per kind the check regenerates: dry runs, or (promote) runs that
    keep their candidate PENDING after the gate."""
    common: dict[str, Any] = {
        "reflexio_url": settings.url,
        "dry_run": not params.promote,
        "gate_policy": params.gate_policy,
        # CI never waits for a person: a warn passes only when the caller allows it.
        "on_warn": "upgrade" if params.allow_warn else "refuse",
        "notification_block": params.notification_block,
        "backup_dir": params.backup_dir,
        "operation_timeout_s": params.operation_timeout_s,
        "lock_timeout_s": params.lock_timeout_s,
    }
    runs: list[KindRun] = []
    if params.regenerate_profiles:
        engine = make_engine(
            PROFILES, RegenerationParams(**common), "Profile regeneration", journaled=False
        )
        runs.append(KindRun("profiles", engine))
    if params.agent_version:
        version = params.agent_version
        playbook_params = PlaybookRegenerationParams(
            **common, agent_version=version, aggregate=False
        )
        title = f"Playbook regeneration ({version})"
        engine = make_engine(user_playbooks(version), playbook_params, title, journaled=False)
        runs.append(KindRun(f"playbooks {version}", engine))
    return runs


def _start_record(settings: ReflexioSettings, params: PromptChangeParams) -> CheckRecord:
    """Store what the next run needs to undo this check, before anything is applied."""
    version = params.agent_version
    profiles_pending = (
        {r["profile_id"] for r in list_profiles(settings, "pending")}
        if params.regenerate_profiles
        else set()
    )
    playbooks = list_user_playbooks(settings, version) if version else []
    record = CheckRecord(
        server=server_key(settings.url),
        flow_run_id=run_id(),
        started_at=int(time.time()),
        promote=params.promote,
        profiles=params.regenerate_profiles,
        agent_version=version,
        profiles_pending_before=frozenset(profiles_pending),
        playbooks_pending_before=frozenset(
            str(r["user_playbook_id"]) for r in playbooks if r.get("status") == "pending"
        ),
        config=read_config(settings),
        playbooks_before=tuple(r for r in playbooks if r.get("status") in (None, "current")),
    )
    save_record(settings.url, record)
    return record


def _check_kind(run: KindRun) -> CheckKind:
    """The record's name for the run's kind (the gate's)."""
    return run.engine.kind.gate_kind


def _upgrade_started(run: KindRun) -> UpgradeStarted:
    """What the record says before this run's candidate is upgraded."""
    assert run.kept is not None
    pending = run.kept.state.pending
    if _check_kind(run) == "playbooks":
        return UpgradeStarted("playbooks", len(pending), candidate_ids=frozenset(pending))
    backup = run.engine.summary.backup_path
    return UpgradeStarted(
        "profiles",
        len(pending),
        backup=backup,
        host=socket.gethostname(),
    )


def _promote(
    url: str, kind_runs: list[KindRun], record: CheckRecord, runs: Runs
) -> tuple[bool, CheckRecord, Runs]:
    """Upgrade every kept candidate, profiles first; when one fails, roll back those
    upgraded before it. Returns whether all were promoted, the record (without the kinds
    whose rows are back) and the latest outcomes."""
    latest = dict(runs)
    upgraded: list[KindRun] = []
    for run in kind_runs:
        if run.kept is None:  # nothing to upgrade for this kind
            continue
        record = record.with_upgrade(_upgrade_started(run))
        save_record(url, record)
        outcome = run.promote()
        latest[run.name] = outcome
        if outcome.decision is Decision.UPGRADED:
            upgraded.append(run)
            continue
        if outcome.decision is not Decision.ERROR:  # the engine put its rows back
            record = record.without_upgrade(_check_kind(run))
        reason = (
            f"{run.name} could not be upgraded ({outcome.decision.value}), and the prompt "
            "check promotes every kind or none"
        )
        for done in reversed(upgraded):
            undone = done.undo(reason)
            latest[done.name] = undone
            if undone.decision is Decision.ROLLED_BACK:
                record = record.without_upgrade(_check_kind(done))
        return False, record, list(latest.items())
    return True, record, list(latest.items())


def _aggregate(settings: ReflexioSettings, params: PromptChangeParams) -> str:
    """Aggregation after a promotion; '' without playbooks."""
    if not params.agent_version:
        return ""
    return run_playbook_aggregation(settings, params.agent_version)


def _report(params: PromptChangeParams, verdict: Verdict, message: str, runs: Runs) -> str:
    lines = [
        report_title(verdict),
        "",
        f"**{message}**",
        "",
        f"- candidate config: {describe_config(params.candidate_config.get_secret_value())}",
        f"- promote: {params.promote}",
    ]
    for name, outcome in runs:
        lines += ["", f"## {name}: {outcome.decision.value}", "", outcome.message, ""]
        lines.append(outcome.gate.markdown if outcome.gate else "_The gate did not run._\n")
    return "\n".join(lines) + "\n"


def _result(
    params: PromptChangeParams, verdict: Verdict, message: str, runs: Runs | None = None
) -> PromptCheckResult:
    report = _report(params, verdict, message, runs or [])
    return PromptCheckResult(verdict=verdict, message=message, report_markdown=report)


def check_prompt_change(params: PromptChangeParams) -> PromptCheckResult:
    """Run the whole prompt check and return its verdict and report (no exception escapes
    for expected failures: bad input, another writer busy, an earlier check that could not
    be undone, stall, gate failure, server errors). The server's lock is held throughout."""
    try:
        candidate = load_candidate_config(params.candidate_config.get_secret_value())
    except ConfigFileError as exc:
        return _result(params, Verdict.BAD_INPUT, str(exc))
    settings = params.settings()
    golden = _golden_stage(params, settings.url, candidate)
    if isinstance(golden, PromptCheckResult):
        return golden
    try:
        with server_lock(settings.url, params.lock_timeout_s) as held:
            result = _check_candidate(params, settings, candidate)
    except ServerBusy as exc:
        return _result(params, Verdict.BUSY, str(exc))
    except NotRepaired as exc:
        return _result(params, Verdict.ERROR, str(exc))
    if golden is not None:
        result.message = f"{result.message} {golden.sentence()}"
        result.report_markdown += f"\n{golden.markdown}"
    if held.repaired:
        result.message = f"{held.repaired} {result.message}"
        result.report_markdown += f"\n**Before this check:** {held.repaired}\n"
    if lost := held.lost_note():
        result.message = f"{result.message} {lost}"
        result.report_markdown += f"\n**{lost}**\n"
    return result


UNTOUCHED = "The candidate config was not applied to the server."
STOP_VERDICT = {
    Stop.BAD_INPUT: Verdict.BAD_INPUT,
    Stop.ERROR: Verdict.ERROR,
    Stop.FAILED: Verdict.FAIL,
}


def _golden_stage(
    params: PromptChangeParams, checked_url: str, candidate: dict[str, Any]
) -> GoldenResult | PromptCheckResult | None:
    """The golden set on a scratch server (flows/golden_stage.py), before the checked server
    is touched: its result, or the check's final result when it failed or could not run;
    None without a golden file."""
    stage = golden_stage(params, checked_url, candidate, "the candidate config", UNTOUCHED)
    if not isinstance(stage, GoldenStop):
        return stage
    result = _result(params, STOP_VERDICT[stage.why], stage.message)
    if stage.result is not None:
        result.report_markdown += f"\n{stage.result.markdown}"
    return result


def _check_candidate(
    params: PromptChangeParams, settings: ReflexioSettings, candidate: dict[str, Any]
) -> PromptCheckResult:
    """Stall check, then record -> apply -> gates -> promote or undo, under the lock."""
    stall, note = check_stall(settings, params.notification_block)
    if stall is not None:
        message = f"{stall.message} ({note}) The candidate config was not applied."
        return _result(params, Verdict.STALL, message)
    kind_runs = _kind_runs(params, settings)
    record = _start_record(settings, params)
    runs: Runs = []
    promoted = False
    undo: Undo | None = None
    try:
        apply_config(settings, candidate)
        runs = [(run.name, run.gate()) for run in kind_runs]
        if params.promote and all(o.succeeded for _, o in runs):
            promoted, record, runs = _promote(settings.url, kind_runs, record, runs)
    finally:
        if not promoted:
            undo = undo_and_forget(settings.url, record)
        for run in kind_runs:
            publish_summary(run.engine)
    if promoted:
        delete_record(settings.url)
        return _promoted(params, settings, runs)
    assert undo is not None
    return _not_promoted(params, settings.url, runs, undo)


def _promoted(
    params: PromptChangeParams, settings: ReflexioSettings, runs: Runs
) -> PromptCheckResult:
    message = "Every gate passed; every kind was promoted and the candidate config kept."
    try:
        aggregated = _aggregate(settings, params)
    except ReflexioError as exc:
        message = (
            f"{message} Aggregation failed: {exc}. The candidate stays promoted; run "
            "aggregation again."
        )
        return _result(params, Verdict.ERROR, message, runs)
    if aggregated:
        message = f"{message} Aggregation: {aggregated}"
    return _result(params, Verdict.PASS, message, runs)


def _not_promoted(
    params: PromptChangeParams, url: str, runs: Runs, undo: Undo
) -> PromptCheckResult:
    outcomes = [o for _, o in runs]
    verdict = classify(outcomes)
    failures = [o.message for o in outcomes if not o.succeeded]
    if verdict is Verdict.PASS:
        message = "Every gate passed (dry run). Run with promote=true to apply it."
    else:
        message = failures[0]
    if not undo.complete:
        message = (
            f"{message} The check could not undo itself: {undo.sentence()} Its record "
            f"(Secret block '{catalogue.check_record_block(url)}') is "
            "kept: the next run on this server finishes the undo before anything else."
        )
        return _result(params, Verdict.ERROR, message, runs)
    return _result(params, verdict, f"{message} The check undid itself: {undo.sentence()}", runs)


@flow(
    name="prompt-change",
    flow_run_name=run_names.prompt_check,
    timeout_seconds=FLOW_TIMEOUT_S["prompt-change"],
    validate_parameters=True,
    persist_result=True,  # the outcome is read from the API after the run (docs)
)
@flat_parameters(PromptChangeParams)
def prompt_change(params: PromptChangeParams) -> State:
    """Try a candidate config: regenerate, gate, promote only when allowed (module docstring).

    The final state carries the PromptCheckResult as its data (the CLI reads it) and the
    verdict's message; it is Completed only for PASS.
    """
    try:
        result = check_prompt_change(params)
    except ReflexioError as exc:
        message = f"Stopped on a Reflexio error: {exc}"
        result = PromptCheckResult(
            verdict=Verdict.ERROR,
            message=message,
            report_markdown=f"{report_title(Verdict.ERROR)}\n\n{message}\n",
        )
    create_markdown_artifact(
        result.report_markdown,
        key=catalogue.prompt_check_artifact(params.settings().url),
        description=result.message[:200],
    )
    get_run_logger().info("Decision: %s: %s", result.verdict.name, result.message)
    if result.verdict is Verdict.PASS:
        return Completed(message=result.message, data=result)
    if result.verdict is Verdict.BUSY:
        return lock_busy(result.message, result)
    name = STALLED_STATE_NAME if result.verdict is Verdict.STALL else "Failed"
    return Failed(name=name, message=result.message, data=result)
