"""Prompt change (what CI runs): try a candidate Reflexio config, regenerate, gate, decide.

the server's lock (flows/lock.py, held to the end: the regenerations inside re-enter it) ->
stall check -> save the current config -> apply the candidate -> profile regeneration (and
playbook regeneration for an agent_version) -> gate. With ``promote`` and every gate passing,
the regenerations upgrade and the candidate config stays. Otherwise the regenerations run
dry, the saved config is put back and the candidate's PENDING rows are deleted; CURRENT
playbooks the playbook rerun tombstoned (H6) are re-created from the list taken before it
(same content, new ids), so the server is left as it was.

The verdict is the flow's final state and, through ``flows.cli``, the process exit code.
"""

import json
import os
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from core.identity import server_slug
from core.outcome import Decision, RegenerationOutcome
from core.rollback import playbooks_to_recreate
from deployments import catalogue
from flows._common import STALLED_STATE_NAME, run_id
from flows.lock import ServerBusy, server_lock
from flows.params import PlaybookRegenerationParams, PromptChangeParams, RegenerationParams
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from reflexio_api import ReflexioClient, ReflexioError, ReflexioSettings
from tasks.server import add_user_playbooks, delete_user_playbooks, list_user_playbooks
from tasks.stall import check_stall


class Verdict(IntEnum):
    """The prompt check's outcome; the value is the CLI's exit code."""

    PASS = 0
    FAIL = 1
    STALL = 2
    BAD_INPUT = 3
    ERROR = 4
    BUSY = 5


class ConfigFileError(ValueError):
    """The candidate config file is missing or not a JSON/YAML mapping."""


def load_candidate_config(path: Path) -> dict[str, Any]:
    """Read a candidate config (JSON or YAML mapping); clear error when it is unusable."""
    if not path.is_file():
        raise ConfigFileError(
            f"Candidate config {path} does not exist; pass the path of a JSON or YAML file."
        )
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigFileError(
            f"Candidate config {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}"
            f": {str(exc).splitlines()[0]}. Fix the file and run again."
        ) from None
    if not isinstance(data, dict) or not data:
        raise ConfigFileError(
            f"Candidate config {path} must be a non-empty mapping of Reflexio config fields "
            f"(e.g. profile_extractor_config: ...), not {type(data).__name__}."
        )
    return data


class PromptCheckResult(BaseModel):
    """What CI needs: the verdict and a Markdown report."""

    verdict: Verdict
    message: str
    report_markdown: str


@task(name="save-config", cache_policy=NO_CACHE)
def save_config(settings: ReflexioSettings, backup_dir: Path, run_id: str) -> Path:
    """Write the server's current config to a private file (it may hold credentials)."""
    with ReflexioClient(settings) as client:
        config = client.get_config()
    backup_dir.mkdir(parents=True, exist_ok=True)
    path = backup_dir / f"config-{server_slug(settings.url)}-{run_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle, indent=2)
    return path.resolve()


@task(name="apply-config", cache_policy=NO_CACHE)
def apply_config(settings: ReflexioSettings, candidate: dict[str, Any]) -> None:
    """Merge the candidate's top-level fields into the server config."""
    with ReflexioClient(settings) as client:
        client.update_config(candidate)


@task(name="restore-config", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def restore_config(settings: ReflexioSettings, saved_path: Path) -> None:
    """Put the saved config back whole."""
    with ReflexioClient(settings) as client:
        client.set_config(json.loads(saved_path.read_text()))


@task(name="put-back-playbooks", cache_policy=NO_CACHE)
def put_back_playbooks(
    settings: ReflexioSettings, agent_version: str, before: list[dict[str, Any]]
) -> str:
    """Undo a playbook rerun that is not promoted: delete its PENDING rows and re-create the
    CURRENT rows it tombstoned (H6; same content, new ids). Returns what was done."""
    live = list_user_playbooks.fn(settings, agent_version)
    pending = [r["user_playbook_id"] for r in live if r["status"] == "pending"]
    deleted = delete_user_playbooks.fn(settings, pending)
    missing = playbooks_to_recreate(before, list_user_playbooks.fn(settings, agent_version))
    recreated = add_user_playbooks.fn(settings, [dict(r) for r in missing])
    return (
        f"Playbooks {agent_version}: deleted {deleted} PENDING row(s), re-created {recreated} "
        "CURRENT row(s) the rerun had tombstoned (H6; same content, new ids)."
    )


def classify(outcomes: list[RegenerationOutcome]) -> Verdict:
    """The worst outcome among the regenerations (none: PASS)."""
    if any(o.decision is Decision.STALLED for o in outcomes):
        return Verdict.STALL
    return Verdict.PASS if all(o.succeeded for o in outcomes) else Verdict.FAIL


def _outcome(state: State) -> RegenerationOutcome:
    """The regeneration's typed outcome, carried as its final state's data."""
    result = state.result(raise_on_failure=False)
    if not isinstance(result, RegenerationOutcome):
        raise RuntimeError(
            f"The regeneration ended {state.type.value} without an outcome: {result!r}"
        )
    return result


def _run_regenerations(
    params: PromptChangeParams, settings: ReflexioSettings
) -> list[tuple[str, RegenerationOutcome]]:
    common = {
        "reflexio_url": settings.url,
        "dry_run": not params.promote,
        "gate_policy": params.gate_policy,
        # CI never waits for a person: a warn passes only when the caller allows it.
        "on_warn": "upgrade" if params.allow_warn else "refuse",
        "notification_block": params.notification_block,
        "backup_dir": params.backup_dir,
        "operation_timeout_s": params.operation_timeout_s,
    }
    runs: list[tuple[str, RegenerationOutcome]] = []
    if params.regenerate_profiles:
        state = profile_regeneration(RegenerationParams(**common), return_state=True)
        runs.append(("profiles", _outcome(state)))
    if params.agent_version:
        playbook_params = PlaybookRegenerationParams(
            **common, agent_version=params.agent_version, aggregate=params.promote
        )
        state = playbook_regeneration(playbook_params, return_state=True)
        runs.append((f"playbooks {params.agent_version}", _outcome(state)))
    return runs


def _report(
    params: PromptChangeParams,
    verdict: Verdict,
    message: str,
    runs: list[tuple[str, RegenerationOutcome]],
) -> str:
    lines = [
        f"# Prompt check: {verdict.name}",
        "",
        f"**{message}**",
        "",
        f"- candidate config: `{params.config_file}`",
        f"- promote: {params.promote}",
    ]
    for name, outcome in runs:
        lines += ["", f"## {name}: {outcome.decision.value}", "", outcome.message, ""]
        lines.append(outcome.gate.markdown if outcome.gate else "_The gate did not run._\n")
    return "\n".join(lines) + "\n"


def check_prompt_change(params: PromptChangeParams) -> PromptCheckResult:
    """Run the whole prompt check and return its verdict and report (no exception escapes
    for expected failures: bad input, another writer busy, stall, gate failure, server
    errors). The server's lock is held from the stall check to the end."""
    try:
        candidate = load_candidate_config(params.config_file)
    except ConfigFileError as exc:
        return PromptCheckResult(
            verdict=Verdict.BAD_INPUT,
            message=str(exc),
            report_markdown=f"# Prompt check: BAD_INPUT\n\n{exc}\n",
        )
    settings = params.settings()
    try:
        with server_lock(settings.url, params.lock_timeout_s) as held:
            result = _check_candidate(params, settings, candidate)
    except ServerBusy as exc:
        return PromptCheckResult(
            verdict=Verdict.BUSY,
            message=str(exc),
            report_markdown=f"# Prompt check: BUSY\n\n{exc}\n",
        )
    if held.lost:
        result.message = f"{result.message} {held.lost_message()}"
        result.report_markdown += f"\n**{held.lost_message()}**\n"
    return result


def _check_candidate(
    params: PromptChangeParams, settings: ReflexioSettings, candidate: dict[str, Any]
) -> PromptCheckResult:
    """Stall check, then apply -> regenerate -> restore, under the caller's lock."""
    stall, note = check_stall(settings, params.notification_block)
    if stall is not None:
        message = f"{stall.message} ({note}) The candidate config was not applied."
        return PromptCheckResult(
            verdict=Verdict.STALL,
            message=message,
            report_markdown=_report(params, Verdict.STALL, message, []),
        )
    saved = save_config(settings, params.backup_dir, run_id())
    playbooks_before = (
        list_user_playbooks(settings, params.agent_version, "current")
        if params.agent_version
        else []
    )
    runs: list[tuple[str, RegenerationOutcome]] = []
    put_back = ""
    promoted = False
    try:
        apply_config(settings, candidate)
        runs = _run_regenerations(params, settings)
        promoted = params.promote and all(o.succeeded for _, o in runs)
    finally:
        if not promoted:
            restore_config(settings, saved)
            if params.agent_version:
                put_back = put_back_playbooks(settings, params.agent_version, playbooks_before)
    outcomes = [o for _, o in runs]
    failures = [o.message for o in outcomes if not o.succeeded]
    verdict = classify(outcomes)
    if verdict is Verdict.PASS:
        message = (
            "Every gate passed; the candidate was promoted and its config kept."
            if promoted
            else "Every gate passed (dry run); the saved config was restored and the candidate's "
            "PENDING rows deleted. Run with promote=true to apply it."
        )
    else:
        message = f"{failures[0]} The saved config was restored from {saved}."
    if put_back:
        message = f"{message} {put_back}"
    return PromptCheckResult(
        verdict=verdict, message=message, report_markdown=_report(params, verdict, message, runs)
    )


@flow(name="prompt-change", validate_parameters=True)
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
            report_markdown=f"# Prompt check: ERROR\n\n{message}\n",
        )
    create_markdown_artifact(
        result.report_markdown,
        key=catalogue.prompt_check_artifact(params.settings().url),
        description=result.message[:200],
    )
    if result.verdict is Verdict.PASS:
        return Completed(message=result.message, data=result)
    name = STALLED_STATE_NAME if result.verdict is Verdict.STALL else "Failed"
    return Failed(name=name, message=result.message, data=result)
