"""The prompt check's golden stage without a server: bad input is refused before anything
runs, a score below the floor fails the check with the missed items, a pass lets it go on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import flows.golden_stage as golden_stage
import tasks.golden as tasks_golden
from flows.golden_stage import GoldenInputError, GoldenResult, prepare
from flows.params import PromptChangeParams
from flows.prompt_change import PromptCheckResult, Verdict, _golden_stage
from gate.golden import Generated

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "golden" / "sample.yaml"


def _params(tmp_path: Path, **golden: Any) -> PromptChangeParams:
    return PromptChangeParams(
        candidate_config="profile_extractor_config: {}\n", golden_file=SAMPLE, **golden
    )


def test_a_scratch_server_that_is_the_checked_server_is_refused(tmp_path: Path) -> None:
    params = _params(tmp_path, golden_server_url="http://127.0.0.1:8081/")

    with pytest.raises(GoldenInputError, match=r"127\.0\.0\.1:8081 is the server being checked"):
        prepare(params, "http://127.0.0.1:8081")


def test_a_missing_golden_file_is_bad_input_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(golden_stage, "golden_server", _fail_if_called)
    params = _params(tmp_path).model_copy(update={"golden_file": tmp_path / "nope.yaml"})

    result = _golden_stage(params, "http://127.0.0.1:8081", {})

    assert isinstance(result, PromptCheckResult) and result.verdict is Verdict.BAD_INPUT
    assert "nope.yaml does not exist" in result.message
    assert "The candidate config was not applied to the server." in result.message


def test_no_key_in_the_secret_block_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise ValueError(f"Unable to find block document named {name}")

    monkeypatch.setattr(tasks_golden.Secret, "load", absent)

    with pytest.raises(tasks_golden.GoldenKeyMissing, match="Secret block 'my-key' holds none"):
        tasks_golden.provider_key("my-key")


def _fail_if_called(*args: Any) -> None:
    raise AssertionError("the scratch server must not start")


def _generating(monkeypatch: pytest.MonkeyPatch, rows: list[Generated]) -> list[str]:
    """The scratch server and its generation replaced: every golden item's text comes back
    except those in `rows`' place; returns the URLs the generation was asked to use."""
    used: list[str] = []

    @contextmanager
    def server(url: str | None, block: str, base: str | None) -> Iterator[str]:
        yield url or "http://127.0.0.1:9999"

    def generate(url: str, golden: Any, candidate: Any) -> list[Generated]:
        used.append(url)
        return rows

    monkeypatch.setattr(golden_stage, "golden_server", server)
    monkeypatch.setattr(golden_stage, "generate_golden_rows", generate)
    monkeypatch.setattr(golden_stage, "get_run_logger", lambda: _Quiet())
    return used


class _Quiet:
    def info(self, *args: Any) -> None:
        pass


def _every_item_but(skip: str) -> list[Generated]:
    expected = prepare(
        PromptChangeParams(candidate_config="window_size: 10\n", golden_file=SAMPLE), "http://x:1"
    )
    return [
        Generated(e.user_id, e.kind, e.text, f"row-{i}")
        for i, e in enumerate(expected.expected())
        if e.text != skip
    ]


def test_a_score_below_the_recall_floor_fails_naming_the_missed_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _generating(monkeypatch, _every_item_but("The user is vegetarian"))

    result = _golden_stage(_params(tmp_path), "http://127.0.0.1:8081", {})

    assert isinstance(result, PromptCheckResult) and result.verdict is Verdict.FAIL
    assert "Missed: 'The user is vegetarian'" in result.message
    assert "not applied to the server" in result.message
    missed = result.report_markdown.split("### Missed expected items (1)")[1]
    assert "conversation 1 (golden-bob) profiles[1]" in missed


def test_a_lower_floor_lets_the_same_score_pass_and_the_check_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = _generating(monkeypatch, _every_item_but("The user is vegetarian"))
    params = _params(
        tmp_path, gate_policy={"golden_min_recall": 0.8}, golden_server_url="http://10.0.0.5:8081"
    )

    result = _golden_stage(params, "http://127.0.0.1:8081", {})

    assert isinstance(result, GoldenResult) and not result.failed
    assert "## Golden set: PASS" in result.markdown
    assert used == ["http://10.0.0.5:8081"]
