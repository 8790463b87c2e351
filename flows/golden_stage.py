"""The golden-set stage: is a config *right*, not just similar to before?

Before the run writes to its server, the config under test runs on a scratch Reflexio
server (started here from local_stack, or the one given; never the run's server), which
learns the golden conversations; what it learned for the golden users is scored against the
expected facts and rules (gate/golden.py), and the gate policy's golden_min_recall (and
golden_min_precision) decide. The report lists every missed and every unexpected item.

Two runs use it: the prompt check tests its candidate config (flows/prompt_change.py), and a
regeneration with a golden file tests the server's current learning config before its rerun
(`golden_first`), so that a nightly does not regenerate with a config that learns wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from core.golden_set import GoldenSet, GoldenSetError, load_golden_set
from core.identity import server_key
from core.outcome import Decision, GateOutcome, RegenerationOutcome
from core.regeneration import Engine
from deployments import catalogue
from flows.params import PromptChangeParams, RegenerationParams
from gate import GatePolicy, GatePolicyError, Severity
from gate.golden import GoldenScore, score
from local_stack.reflexio_server import ServerStartError
from local_stack.server_venv import ServerInstallError
from reflexio_api import ReflexioError
from tasks.config import read_config
from tasks.golden import GoldenKeyMissing, generate_golden_rows, golden_server

GoldenRun = PromptChangeParams | RegenerationParams
"""The runs with a golden stage: their golden fields (GoldenParams) and gate policy."""

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


def prepare(params: GoldenRun, checked_url: str) -> GoldenSet:
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
    params: GoldenRun, golden: GoldenSet, candidate: Mapping[str, Any], what: str
) -> GoldenResult:
    """Learn the golden conversations on a scratch server with the candidate (`what` names
    it in the report), and score."""
    policy = GatePolicy().with_overrides(params.gate_policy)
    try:
        with golden_server(
            params.golden_server_url, params.golden_llm_key_block, params.golden_llm_base_url
        ) as url:
            rows = generate_golden_rows(url, golden, candidate)
    except GoldenKeyMissing as exc:
        raise GoldenInputError(str(exc)) from None
    found = score(golden.expected(), rows)
    intro = f"`{params.golden_file}`: {len(golden.conversations)} conversations, learned by "
    intro += f"{what} on a scratch server."
    result = GoldenResult(found, policy, found.markdown(policy, intro))
    get_run_logger().info("%s", result.sentence())
    return result


class Stop(Enum):
    """Why the golden stage stopped its run."""

    BAD_INPUT = "bad input"
    """The file, the key or the scratch server's URL is unusable."""
    ERROR = "error"
    """The scratch server failed (start, install, a Reflexio error)."""
    FAILED = "failed"
    """Recall or precision below its floor."""


@dataclass(frozen=True)
class GoldenStop:
    """The golden stage stopped the run before it wrote anything: why, the run's message,
    and the score when there was one (FAILED)."""

    why: Stop
    message: str
    result: GoldenResult | None = None


def golden_stage(
    params: GoldenRun, checked_url: str, candidate: Mapping[str, Any], what: str, untouched: str
) -> GoldenResult | GoldenStop | None:
    """The golden set on a scratch server, before the run's server is written to: its
    result when it passed, why it stopped the run (each message ends with `untouched`),
    or None without a golden file."""
    if params.golden_file is None:
        return None
    try:
        golden = run_golden(params, prepare(params, checked_url), candidate, what)
    except GoldenInputError as exc:
        return GoldenStop(Stop.BAD_INPUT, f"{exc} {untouched}")
    except (ReflexioError, ServerStartError, ServerInstallError) as exc:
        message = f"The golden set's scratch server failed: {exc} {untouched}"
        return GoldenStop(Stop.ERROR, message)
    if not golden.failed:
        return golden
    return GoldenStop(Stop.FAILED, f"{golden.sentence()} {untouched}", golden)


LEARNING_FIELDS = (
    "agent_context_prompt",
    "tool_can_use",
    "profile_extractor_config",
    "user_playbook_extractor_config",
    "extraction_preset",
    "window_size",
    "stride_size",
    "llm_config",
    "skip_should_run_check",
)
"""The fields of a Reflexio config that decide what is learned and how: what a prompt
check's candidate carries. Storage, provider keys (api_key_config: the scratch server has
its own), retention, retrieval and evaluation settings stay the scratch server's own."""


def learning_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A server's learning fields (LEARNING_FIELDS) as a candidate for the scratch server,
    extraction on publish turned on (a server that extracts only on manual runs would
    learn nothing from the golden conversations, which are published)."""
    learning = {k: config[k] for k in LEARNING_FIELDS if config.get(k) is not None}
    profiles = learning.get("profile_extractor_config")
    if isinstance(profiles, Mapping):
        learning["profile_extractor_config"] = {**profiles, "manual_trigger": False}
    return learning


REGENERATION_UNTOUCHED = "Not regenerated: nothing was written to the server."


def golden_first(engine: Engine, params: RegenerationParams) -> RegenerationOutcome | None:
    """A regeneration's golden stage, before its first step: the server's current learning
    config learns the golden set on a scratch server. None without a golden file or when it
    passed (the summary notes it); else the run's outcome, nothing written to the server:
    below a floor it ends as a failed gate ends (GATE_BLOCKED, the gate-failed event, the
    report as the gate report artifact)."""
    if params.golden_file is None:
        return None
    try:
        config = learning_config(read_config(params.settings()))
    except ReflexioError as exc:
        message = f"The server's config could not be read for the golden set: {exc}"
        return engine.outcome(Decision.ERROR, f"{message} {REGENERATION_UNTOUCHED}")
    what = "the server's current learning config"
    stage = golden_stage(params, engine.ops.url, config, what, REGENERATION_UNTOUCHED)
    if isinstance(stage, GoldenResult):
        engine.summary.note(stage.sentence())
        return None
    assert stage is not None
    if stage.result is None:
        decision = Decision.REFUSED if stage.why is Stop.BAD_INPUT else Decision.ERROR
        return engine.outcome(decision, stage.message)
    return _golden_blocked(engine, stage.message, stage.result)


def _golden_blocked(engine: Engine, message: str, golden: GoldenResult) -> RegenerationOutcome:
    """The run ends as a failed gate ends: the golden report is its gate report."""
    sentence = golden.sentence()
    engine.summary.gate = sentence
    create_markdown_artifact(
        golden.markdown, key=f"{engine.prefix}-gate-report", description=sentence[:200]
    )
    engine.ops.emit(
        catalogue.EVENT_GATE_FAILED,
        kind=engine.kind.name,
        agent_version=engine.kind.agent_version,
        verdict=Severity.FAIL.value,
        check="golden set",
    )
    gate = GateOutcome(
        verdict=Severity.FAIL.value, sentence=sentence, markdown=golden.markdown, blocked=True
    )
    return engine.outcome(Decision.GATE_BLOCKED, message, gate=gate)
