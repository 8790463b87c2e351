"""`reflexio-pipelines`: console entry points for the prompt check.

    reflexio-pipelines trigger-prompt-check --config reflexio-config/candidate.yaml \\
        [--agent-version v1] [--promote] [--allow-warn] [--report report.md]
        [--lock-timeout 600] [--golden golden/sample.yaml]
        [--deployment prompt-change/prompt-check] [--timeout S]
    reflexio-pipelines prompt-check --config ... [same] [--reflexio-url U] [--backup-dir D]

`trigger-prompt-check` is what CI runs: it runs the check's deployment with the config's text
as the `candidate_config` parameter (on a worker, with the deployment's server and backup
location), waits for the run to end, writes its report and exits with its verdict.
`prompt-check` runs the same check in this process (Prefect's ephemeral local API is used
when PREFECT_API_URL is unset). Neither waits for a person: a 'warn' gate verdict fails the
check unless --allow-warn. Exit codes: 0 pass, 1 gate or regeneration failed, 2 learning is
stalled, 3 bad input (a config file, arguments, nothing to regenerate: --no-profiles
without --agent-version, or no such deployment), 4 Reflexio error (unreachable, rejected key,
...), a check that could not be undone (this one, or an earlier one that died),
aggregation failed after a promotion, or a triggered run that crashed, was cancelled or had
not ended within --timeout, 5 busy: another run held the server's lock for --lock-timeout
seconds (nothing was applied; run again later). A check that dies is undone by the next run
on the server (flows/check_repair.py).
The lock lives in the Prefect API: point PREFECT_API_URL at the deployments' Prefect server
so the check and the scheduled runs share it. The Markdown report goes to --report and,
when set, to $GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn
from uuid import UUID

from deployments.catalogue import PROMPT_CHECK_DEPLOYMENT

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

BAD_INPUT_EXIT = 3  # flows.prompt_change.Verdict.BAD_INPUT, without importing Prefect here


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is the STALL code here: exit 3 instead."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(BAD_INPUT_EXIT, f"{self.prog}: error: bad input: {message}\n")


def _check_arguments(check: argparse.ArgumentParser) -> None:
    """What the check takes, run here or by its deployment."""
    check.add_argument("--config", required=True, type=Path, help="candidate config (JSON/YAML)")
    check.add_argument("--agent-version", help="also regenerate this agent_version's playbooks")
    check.add_argument("--no-profiles", action="store_true", help="skip profile regeneration")
    check.add_argument("--promote", action="store_true", help="upgrade when every gate passes")
    check.add_argument(
        "--allow-warn",
        action="store_true",
        help="let a 'warn' gate verdict pass (default: exit 1; the check never waits for a person)",
    )
    check.add_argument("--report", type=Path, help="write the Markdown report here")
    check.add_argument("--gate-policy", type=Path, help="YAML file of gate policy overrides")
    check.add_argument(
        "--lock-timeout",
        type=float,
        help="seconds to wait while another run writes to the server (default 60)",
    )
    check.add_argument(
        "--golden",
        type=Path,
        help="golden set (YAML; on a deployment, a path in the repository the worker pulled): "
        "learned first on a scratch server with the candidate; below the policy's "
        "golden_min_recall the check fails before the server is touched",
    )
    check.add_argument(
        "--golden-server-url",
        help="a scratch Reflexio server for the golden set (default: start one)",
    )
    check.add_argument(
        "--golden-llm-key-block",
        help="Secret block with the scratch server's LLM provider key "
        "(default: reflexio-golden-llm-key)",
    )
    check.add_argument(
        "--golden-llm-base-url",
        help="OpenAI-compatible endpoint for the scratch server (default: the provider's API)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reflexio-pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("prompt-check", help="try a candidate config: regenerate and gate")
    _check_arguments(check)
    check.add_argument("--reflexio-url", help="server URL (default: REFLEXIO_URL)")
    check.add_argument(
        "--backup-dir",
        default=None,
        help="where backups go: a directory, s3://bucket/prefix or block:<name> "
        "(default: $REFLEXIO_BACKUP_DIR, else ./backups)",
    )
    trigger = sub.add_parser(
        "trigger-prompt-check",
        help="run the check on its deployment (a worker, the team's backups), wait, and exit "
        "with its verdict",
    )
    _check_arguments(trigger)
    trigger.add_argument(
        "--deployment",
        default=PROMPT_CHECK_DEPLOYMENT,
        help=f"the check's deployment, flow/deployment (default {PROMPT_CHECK_DEPLOYMENT})",
    )
    trigger.add_argument(
        "--timeout", type=float, help="seconds to wait for the run (default: until it ends)"
    )
    return parser


def _check_values(args: argparse.Namespace) -> dict[str, Any]:
    """The check's flow parameters the arguments give (the others keep their defaults, or
    the deployment's). ValueError and friends on bad input."""
    from gate import GatePolicy

    if not args.config.is_file():
        raise ValueError(
            f"candidate config {args.config} does not exist; pass the path of a JSON or YAML file"
        )
    values: dict[str, Any] = {
        "candidate_config": args.config.read_text(),
        "regenerate_profiles": not args.no_profiles,
        "promote": args.promote,
        "allow_warn": args.allow_warn,
    }
    if args.agent_version is not None:
        values["agent_version"] = args.agent_version
    if args.gate_policy:
        values["gate_policy"] = GatePolicy.from_yaml(args.gate_policy).model_dump()
    if args.lock_timeout is not None:
        values["lock_timeout_s"] = args.lock_timeout
    if args.golden is not None:
        values["golden_file"] = str(args.golden)
    for name in ("golden_server_url", "golden_llm_key_block", "golden_llm_base_url"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in ("reflexio_url", "backup_dir"):
        if getattr(args, name, None):
            values[name] = getattr(args, name)
    return values


def _reason(exc: Exception) -> str:
    """A parameter error, one clause per problem, without pydantic's echo of the input."""
    from pydantic import ValidationError

    from flows.flat_params import reason

    return reason(exc) if isinstance(exc, ValidationError) else str(exc)


def _checked(args: argparse.Namespace) -> dict[str, Any] | None:
    """The check's parameters, validated; None (said, and in the report) on bad input."""
    from pydantic import ValidationError

    from flows.params import PromptChangeParams
    from flows.prompt_change import Verdict, report_title
    from gate import GatePolicyError

    try:
        values = _check_values(args)
        PromptChangeParams(**values)
    except (ValidationError, GatePolicyError, ValueError, OSError) as exc:
        message = f"bad input: {_reason(exc)}. Nothing was written."
        print(f"error: {message}", file=sys.stderr)
        _write_report(args, f"{report_title(Verdict.BAD_INPUT)}\n\n{message}\n")
        return None
    return values


UNSHARED = (
    "note: PREFECT_API_URL is not set: this check runs on an ephemeral Prefect API on this "
    "machine, so its server lock is not shared with the deployments' runs and its record (how "
    "to undo it if it dies) stays on this machine. Set PREFECT_API_URL (and PREFECT_API_KEY "
    "for Prefect Cloud) to the deployments' Prefect API to share both."
)


def unshared_note() -> str | None:
    """What to say when the check cannot share its lock and record (no PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL

    return None if PREFECT_API_URL.value() else UNSHARED


def prompt_check(args: argparse.Namespace) -> int:
    """Run the prompt check here; print the verdict; write the report; return the exit code."""
    from flows.prompt_change import PromptCheckResult, Verdict, prompt_change

    values = _checked(args)
    if values is None:
        return int(Verdict.BAD_INPUT)
    note = unshared_note()
    if note:
        print(note, file=sys.stderr)
    state = prompt_change(**values, return_state=True)
    result = state.result(raise_on_failure=False)
    if not isinstance(result, PromptCheckResult):
        print(f"error: the prompt check crashed: {state.message}", file=sys.stderr)
        return int(Verdict.ERROR)
    _write_report(args, result.report_markdown + (f"\n> {note}\n" if note else ""))
    print(f"prompt-check: {result.verdict.name}: {result.message}")
    return int(result.verdict)


def trigger_prompt_check(args: argparse.Namespace) -> int:
    """Run the check's deployment with these parameters (the config's text among them),
    wait for its end, write its report and return its verdict as the exit code: what CI
    runs, so that the check runs on a worker and its backups go to the deployment's
    location. The config is not printed (it may hold credentials)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    from flows.prompt_change import Verdict, report_title, verdict_of

    values = _checked(args)
    if values is None:
        return int(Verdict.BAD_INPUT)
    try:
        run = run_deployment(args.deployment, parameters=values, timeout=args.timeout)
    except ObjectNotFound:
        print(
            f"error: bad input: no deployment {args.deployment} on the Prefect API "
            f"({PREFECT_API_URL.value() or 'an ephemeral one: PREFECT_API_URL is not set'}): "
            "deploy it (prefect deploy --all) and point PREFECT_API_URL at that API. "
            "Nothing was written.",
            file=sys.stderr,
        )
        return int(Verdict.BAD_INPUT)
    print(f"flow run {run.name} ({run.id}) of {args.deployment}")
    state = run.state
    if state is None or not state.is_final():
        print(
            f"error: the run had not ended after {args.timeout:g} s; it goes on on its "
            "worker (see the Prefect UI)",
            file=sys.stderr,
        )
        return int(Verdict.ERROR)
    report = _run_report(run.id)
    found = verdict_of(report) if report else None
    if state.is_completed():
        verdict = Verdict.PASS
    else:
        verdict = found if found not in (None, Verdict.PASS) else Verdict.ERROR
    _write_report(args, report or f"{report_title(verdict)}\n\n{state.message}\n")
    print(f"prompt-check: {verdict.name} (run {state.name}): {state.message}")
    return int(verdict)


def _run_report(flow_run_id: UUID) -> str | None:
    """The Markdown report artifact a prompt-check run created (None: it made none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    from deployments.catalogue import PROMPT_CHECK_ARTIFACT_PREFIX

    artifacts = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        key=ArtifactFilterKey(like_=PROMPT_CHECK_ARTIFACT_PREFIX),
    )
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=artifacts)
    return str(found[0].data) if found else None


def _write_report(args: argparse.Namespace, markdown: str) -> None:
    """Append the report to --report and to $GITHUB_STEP_SUMMARY, when given."""
    for target in (args.report, os.environ.get("GITHUB_STEP_SUMMARY")):
        if target:
            with Path(target).open("a") as handle:
                handle.write(markdown)


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = _parser().parse_args(argv)
    if args.command == "prompt-check":
        return prompt_check(args)
    return trigger_prompt_check(args)


if __name__ == "__main__":
    sys.exit(main())
