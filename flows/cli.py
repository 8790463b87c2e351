"""`reflexio-pipelines`: console entry points. `prompt-check` is what CI runs.

    reflexio-pipelines prompt-check --config reflexio-config/candidate.yaml \\
        [--agent-version v1] [--promote] [--allow-warn] [--report report.md]
        [--lock-timeout 600] [--golden golden/sample.yaml]

Runs the prompt check without a Prefect server (Prefect's ephemeral local API is used when
PREFECT_API_URL is unset). It never waits for a person: a 'warn' gate verdict fails the check
unless --allow-warn. Exit codes: 0 pass, 1 gate or regeneration failed, 2 learning is
stalled, 3 bad input (a config file, arguments, or nothing to regenerate: --no-profiles
without --agent-version), 4 Reflexio error (unreachable, rejected key, ...), a check that
could not be undone (this one, or an earlier one that died), or aggregation failed after a
promotion, 5 busy: another run held the server's lock for --lock-timeout seconds (nothing
was applied; run again later). A check that dies is undone by the next run on the server
(flows/check_repair.py).
The lock lives in the Prefect API: point PREFECT_API_URL at the deployments' Prefect server
so the check and the scheduled runs share it. The Markdown report goes to --report and,
when set, to $GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

BAD_INPUT_EXIT = 3  # flows.prompt_change.Verdict.BAD_INPUT, without importing Prefect here


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is the STALL code here: exit 3 instead."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(BAD_INPUT_EXIT, f"{self.prog}: error: bad input: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reflexio-pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("prompt-check", help="try a candidate config: regenerate and gate")
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
    check.add_argument("--reflexio-url", help="server URL (default: REFLEXIO_URL)")
    check.add_argument(
        "--backup-dir",
        default=None,
        help="where backups go: a directory, s3://bucket/prefix or block:<name> "
        "(default: $REFLEXIO_BACKUP_DIR, else ./backups)",
    )
    check.add_argument("--gate-policy", type=Path, help="YAML file of gate policy overrides")
    check.add_argument(
        "--golden",
        type=Path,
        help="golden set (YAML): learned first on a scratch server with the candidate; "
        "below the policy's golden_min_recall the check fails before the server is touched",
    )
    check.add_argument(
        "--golden-server-url",
        help="a scratch Reflexio server for the golden set (default: start one)",
    )
    check.add_argument(
        "--golden-llm-key-block",
        default=None,
        help="Secret block with the scratch server's LLM provider key "
        "(default: reflexio-golden-llm-key)",
    )
    check.add_argument(
        "--golden-llm-base-url",
        help="OpenAI-compatible endpoint for the scratch server (default: the provider's API)",
    )
    check.add_argument(
        "--lock-timeout",
        type=float,
        default=60,
        help="seconds to wait while another run writes to the server (default 60)",
    )
    return parser


def _reason(exc: Exception) -> str:
    """A parameter error, one clause per problem, without pydantic's echo of the input."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    problems = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        what = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)


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
    """Run the prompt check; print the verdict; write the report; return the exit code."""
    from pydantic import ValidationError

    from flows.params import PromptChangeParams
    from flows.prompt_change import PromptCheckResult, Verdict, prompt_change
    from gate import GatePolicy, GatePolicyError

    try:
        overrides = {}
        if args.gate_policy:
            overrides = GatePolicy.from_yaml(args.gate_policy).model_dump()
        params = PromptChangeParams(
            config_file=args.config,
            agent_version=args.agent_version,
            regenerate_profiles=not args.no_profiles,
            promote=args.promote,
            allow_warn=args.allow_warn,
            gate_policy=overrides,
            reflexio_url=args.reflexio_url,
            lock_timeout_s=args.lock_timeout,
            golden_file=args.golden,
            golden_server_url=args.golden_server_url,
            golden_llm_base_url=args.golden_llm_base_url,
            **({"backup_dir": args.backup_dir} if args.backup_dir else {}),
            **(
                {"golden_llm_key_block": args.golden_llm_key_block}
                if args.golden_llm_key_block
                else {}
            ),
        )
    except (ValidationError, GatePolicyError, ValueError) as exc:
        message = f"bad input: {_reason(exc)}. Nothing was written."
        print(f"error: {message}", file=sys.stderr)
        _write_report(args, f"# Prompt check: BAD_INPUT\n\n{message}\n")
        return int(Verdict.BAD_INPUT)
    note = unshared_note()
    if note:
        print(note, file=sys.stderr)
    state = prompt_change(params, return_state=True)
    result = state.result(raise_on_failure=False)
    if not isinstance(result, PromptCheckResult):
        print(f"error: the prompt check crashed: {state.message}", file=sys.stderr)
        return int(Verdict.ERROR)
    _write_report(args, result.report_markdown + (f"\n> {note}\n" if note else ""))
    print(f"prompt-check: {result.verdict.name}: {result.message}")
    return int(result.verdict)


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
    return 2


if __name__ == "__main__":
    sys.exit(main())
