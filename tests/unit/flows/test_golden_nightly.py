"""A regeneration's optional golden stage (flows/golden_stage.py `golden_first`), through
the regeneration wrapper (flows/_common.py) on an in-memory server: off by default, run
before any write with the server's learning config only, and a score below the floor ends
the run as a failed gate ends, nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import flows._common as common
import flows.golden_stage as golden_stage
from core.kinds import PROFILES, Kind
from core.outcome import Decision, RegenerationOutcome
from core.regeneration import Engine
from deployments import catalogue
from flows.golden_stage import LEARNING_FIELDS
from flows.lock import Held
from flows.params import PlaybookRegenerationParams, RegenerationParams
from gate.golden import Generated
from tasks.report import RunSummary
from tests.unit.flows.fake_server import FakeOps
from tests.unit.flows.test_engine import profile_rerun, profile_rows
from tests.unit.flows.test_golden_stage import SAMPLE, _every_item_but, _Quiet

SERVER_CONFIG: dict[str, Any] = {
    "storage_config": {"type": "postgres", "db_url": "postgresql://app:pw@db/prod"},
    "api_key_config": {"openai": {"api_key": "sk-production"}},
    "profile_extractor_config": {
        "extraction_definition_prompt": "Extract the user's facts.",
        "manual_trigger": True,
    },
    "window_size": 10,
    "retrieval_floor": {"enabled": True},
}
"""A production config: storage, provider keys, learning and retrieval settings."""


class Golden:
    """The scratch server and its generation replaced: what the generation was given, and
    the server's effects (FakeOps.calls) when it ran."""

    def __init__(self, ops: FakeOps, rows: list[Generated]) -> None:
        self.ops, self.rows = ops, rows
        self.candidates: list[dict[str, Any]] = []
        self.calls_then: list[str] | None = None

    def generate(self, url: str, golden: Any, candidate: dict[str, Any]) -> list[Generated]:
        self.candidates.append(dict(candidate))
        self.calls_then = list(self.ops.calls)
        return self.rows


@pytest.fixture
def artifacts(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The regeneration wrapper without a Prefect API: the lock, the engine on `FakeOps`,
    the artifacts (key -> Markdown) and the summary (key 'summary')."""
    published: dict[str, str] = {}
    monkeypatch.setenv("REFLEXIO_API_KEY", "test-key")  # no Secret block, no Prefect API

    @contextmanager
    def lock(url: str, timeout_s: float) -> Iterator[Held]:
        yield Held("test-lock", url)

    def publish(engine: Engine) -> None:
        published["summary"] = engine.summary.to_markdown()

    def artifact(markdown: str, key: str, description: str) -> None:
        published[key] = markdown

    monkeypatch.setattr(common, "server_lock", lock)
    monkeypatch.setattr(common, "publish_summary", publish)
    monkeypatch.setattr(golden_stage, "create_markdown_artifact", artifact)
    monkeypatch.setattr(golden_stage, "get_run_logger", lambda: _Quiet())
    monkeypatch.setattr(golden_stage, "read_config", lambda settings: SERVER_CONFIG)
    return published


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rows: list[Generated], **params: Any
) -> tuple[RegenerationOutcome, FakeOps, Golden]:
    """A profile regeneration of an in-memory server, the golden generation giving `rows`."""
    ops = FakeOps(PROFILES, profile_rows(), profile_rerun)
    golden = Golden(ops, rows)

    @contextmanager
    def server(url: str | None, block: str, base: str | None) -> Iterator[str]:
        yield url or "http://127.0.0.1:9999"

    def engine(kind: Kind, run: RegenerationParams, title: str) -> Engine:
        return Engine(ops, run, RunSummary(title=title, server=ops.url), "run-1234abcd")

    monkeypatch.setattr(golden_stage, "golden_server", server)
    monkeypatch.setattr(golden_stage, "generate_golden_rows", golden.generate)
    monkeypatch.setattr(common, "make_engine", engine)
    run = RegenerationParams(
        reflexio_url=ops.url, backup_dir=str(tmp_path), backup_retention_days=0, **params
    )
    state = common.run_regeneration(PROFILES, run, "Profile regeneration")
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, RegenerationOutcome)
    return outcome, ops, golden


def test_the_golden_stage_is_off_by_default() -> None:
    assert RegenerationParams().golden_file is None
    assert PlaybookRegenerationParams().golden_file is None


def test_without_a_golden_file_the_regeneration_runs_as_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, artifacts: dict[str, str]
) -> None:
    outcome, _, golden = _run(monkeypatch, tmp_path, [])

    assert outcome.decision is Decision.UPGRADED
    assert golden.candidates == []  # no scratch server learned anything
    assert "Golden set" not in artifacts["summary"]


def test_a_golden_set_below_the_floor_stops_the_run_before_any_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, artifacts: dict[str, str]
) -> None:
    rows = _every_item_but("The user is vegetarian")

    outcome, ops, golden = _run(monkeypatch, tmp_path, rows, golden_file=SAMPLE)

    assert golden.calls_then == []  # the golden set ran before the server was asked anything
    assert ops.calls == []  # and nothing was read, rerun, deleted or upgraded after it
    assert not list(tmp_path.iterdir())  # no backup either
    assert outcome.decision is Decision.GATE_BLOCKED and not outcome.succeeded
    assert "Missed: 'The user is vegetarian'" in outcome.message
    assert "Not regenerated: nothing was written to the server." in outcome.message
    assert outcome.gate is not None and outcome.gate.blocked and outcome.gate.verdict == "fail"
    report = artifacts[f"{PROFILES.artifact_prefix(ops.url)}-gate-report"]
    missed = report.split("### Missed expected items (1)")[1]
    assert "conversation 1 (golden-bob) profiles[1]" in missed
    assert "- gate: Golden set failed" in artifacts["summary"]
    assert ops.events == [
        (
            catalogue.EVENT_GATE_FAILED,
            {"kind": "profiles", "agent_version": None, "verdict": "fail", "check": "golden set"},
        )
    ]


def test_the_scratch_server_learns_with_the_servers_learning_config_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, artifacts: dict[str, str]
) -> None:
    _, _, golden = _run(monkeypatch, tmp_path, [], golden_file=SAMPLE)

    [candidate] = golden.candidates
    assert set(candidate) <= set(LEARNING_FIELDS)
    assert "storage_config" not in candidate and "api_key_config" not in candidate
    assert candidate["window_size"] == 10
    extractor = candidate["profile_extractor_config"]
    assert extractor["extraction_definition_prompt"] == "Extract the user's facts."
    assert extractor["manual_trigger"] is False  # the golden set learns by publishing


def test_a_passing_golden_set_lets_the_regeneration_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, artifacts: dict[str, str]
) -> None:
    outcome, ops, golden = _run(monkeypatch, tmp_path, _every_item_but(""), golden_file=SAMPLE)

    assert golden.calls_then == []
    assert outcome.decision is Decision.UPGRADED
    assert "upgrade" in ops.calls
    assert "Golden set passed" in artifacts["summary"]


def test_the_checked_server_as_golden_server_is_refused_with_nothing_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, artifacts: dict[str, str]
) -> None:
    outcome, ops, golden = _run(
        monkeypatch,
        tmp_path,
        [],
        golden_file=SAMPLE,
        golden_server_url="http://127.0.0.1:9/",
    )

    assert outcome.decision is Decision.REFUSED
    assert "is the server being checked" in outcome.message
    assert golden.candidates == [] and ops.calls == []
