"""The prompt check's golden-set stage: is the candidate *right*, not just similar to before?

Before the checked server is touched, the candidate config runs on a scratch Reflexio server
(started here from local_stack, or the one given; never the checked server), which learns
the golden conversations; what it learned for the golden users is scored against the
expected facts and rules (gate/golden.py), and the gate policy's golden_min_recall (and
golden_min_precision) decide. The report lists every missed and every unexpected item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger

from core.golden_set import GoldenSet, GoldenSetError, load_golden_set
from core.identity import server_key
from flows.params import PromptChangeParams
from gate import GatePolicy, GatePolicyError, Severity
from gate.golden import GoldenScore, score
from tasks.golden import GoldenKeyMissing, generate_golden_rows, golden_server

MISSED_IN_MESSAGE = 3
"""Missed items named in the one-line verdict (the report lists them all)."""


class GoldenInputError(ValueError):
    """The golden stage cannot run as asked (file, key, server): bad input, nothing written."""


@dataclass(frozen=True)
class GoldenResult:
    """The golden stage's score, the policy it was held to and its report section."""

    score: GoldenScore
    policy: GatePolicy
    markdown: str

    @property
    def failed(self) -> bool:
        """Recall or precision below its floor."""
        return self.score.failed(self.policy)

    def sentence(self) -> str:
        """One line for the verdict: the floors missed and the first missed items."""
        failing = [c for c in self.score.checks(self.policy) if c.severity is Severity.FAIL]
        if not failing:
            return f"Golden set passed: {self.score.checks(self.policy)[0].message}"
        reasons = "; ".join(f"{c.name}: {c.message.rstrip('.')}" for c in failing)
        missed = self.score.missed
        named = ", ".join(f"'{r.item.text}'" for r in missed[:MISSED_IN_MESSAGE])
        extra = len(missed) - MISSED_IN_MESSAGE
        more = f" and {extra} more" if extra > 0 else ""
        listed = f" Missed: {named}{more}." if missed else ""
        return f"Golden set failed ({reasons}).{listed}"


def prepare(params: PromptChangeParams, checked_url: str) -> GoldenSet:
    """Load the golden file and refuse a scratch server that is the checked one."""
    assert params.golden_file is not None
    try:
        golden = load_golden_set(params.golden_file)
        GatePolicy().with_overrides(params.gate_policy)
    except (GoldenSetError, GatePolicyError) as exc:
        raise GoldenInputError(str(exc)) from None
    scratch = params.golden_server_url
    if scratch and server_key(scratch) == server_key(checked_url):
        raise GoldenInputError(
            f"golden_server_url {server_key(scratch)} is the server being checked: the golden "
            "set erases its users' data and applies the candidate config there. Give a "
            "scratch server, or leave golden_server_url empty to start one."
        )
    return golden


def run_golden(
    params: PromptChangeParams, golden: GoldenSet, candidate: dict[str, Any]
) -> GoldenResult:
    """Learn the golden conversations on a scratch server with the candidate, and score."""
    policy = GatePolicy().with_overrides(params.gate_policy)
    try:
        with golden_server(
            params.golden_server_url, params.golden_llm_key_block, params.golden_llm_base_url
        ) as url:
            rows = generate_golden_rows(url, golden, candidate)
    except GoldenKeyMissing as exc:
        raise GoldenInputError(str(exc)) from None
    found = score(golden.expected(), rows)
    intro = f"`{params.golden_file}`: {len(golden.conversations)} conversations, learned by the "
    intro += "candidate config on a scratch server."
    result = GoldenResult(found, policy, found.markdown(policy, intro))
    get_run_logger().info("%s", result.sentence())
    return result
