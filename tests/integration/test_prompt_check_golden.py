"""The prompt check's golden set, end to end: the CLI, a scratch Reflexio server learning the
golden conversations with the candidate config, the stand-in LLM scripted to forget a fact
when the prompt holds the candidate's wording, and the checked server (the session stack).

CI runs both cases (about 40 s together: one scratch server each, ~7 s to start, and one
dry regeneration of the seeded server in the passing case)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.blocks.system import Secret

from local_stack.stack import LocalStack
from local_stack.stand_in_llm import StandInLLM
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.check_record import load_record
from tests.conftest import SEEDED_CONFIG
from tests.integration.test_prompt_change import _config_and_counts, _run

pytestmark = pytest.mark.integration

WORSE_PROMPT = "Extract the user's facts. Leave out diet and food."
"""The candidate's extraction prompt; with it the scripted stand-in forgets diet facts."""
KEY = "sk-golden-secret-4711"

GOLDEN = {
    "version": 1,
    "threshold": 0.5,
    "conversations": [
        {
            "user_id": "golden-bob",
            "source": "chat",
            "agent_version": "v1",
            "messages": [
                {"role": "user", "content": "Bob here. I'm vegetarian and cook every evening."},
                {"role": "assistant", "content": "Noted, vegetarian recipes it is."},
                {"role": "user", "content": "I have a dog called Pixel who comes on every hike."},
            ],
            "profiles": [
                "I'm vegetarian and cook every evening",
                "I have a dog called Pixel who comes on every hike",
            ],
        },
        {
            "user_id": "golden-carol",
            "source": "email",
            "agent_version": "v1",
            "messages": [
                {"role": "user", "content": "Carol speaking: I run a small bakery in Lyon."},
                {"role": "assistant", "content": "Happy to help with the bakery."},
            ],
            "profiles": ["Carol speaking: I run a small bakery in Lyon"],
            "playbooks": [
                {
                    "text": "When the user mentions 'Carol speaking: I run a small bakery in "
                    "Lyon.', tailor the answer to it.",
                    "threshold": 0.8,
                }
            ],
        },
    ],
}


def _script(llm: StandInLLM) -> None:
    """Like a model that drops diet facts when told to leave out diet and food."""
    llm.configure(forget=["vegetarian"], forget_when="Leave out diet and food")


def _check(stack: LocalStack, tmp_path: Path, candidate: dict, *args: str) -> tuple[int, str]:
    """The CLI's prompt check of `candidate` on `stack`, with the golden set and `args`."""
    golden = tmp_path / "golden.yaml"
    golden.write_text(yaml.safe_dump(GOLDEN))
    config = yaml.safe_dump(candidate)
    return _run(stack, tmp_path, "--golden", str(golden), *args, config_text=config)


def test_a_candidate_missing_a_golden_fact_exits_1_naming_it_and_never_touches_the_server(
    seeded_stack: LocalStack,
    prefect_api: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The check starts its own scratch server, with the provider key from a Secret block."""
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    Secret(value=KEY).save("golden-test-key", overwrite=True)
    config_before, counts_before = _config_and_counts(seeded_stack.url)
    checked_calls = seeded_stack.llm.state.run_calls()
    llm = StandInLLM().start()
    try:
        _script(llm)
        candidate = {"profile_extractor_config": {"extraction_definition_prompt": WORSE_PROMPT}}
        code, report = _check(
            seeded_stack,
            tmp_path,
            candidate,
            "--golden-llm-key-block",
            "golden-test-key",
            "--golden-llm-base-url",
            llm.base_url,
        )
        scratch_calls = sum(llm.state.calls.values())
    finally:
        llm.stop()

    assert code == 1, report
    assert report.startswith("# Prompt check: FAIL"), report
    assert "## Golden set: FAIL" in report
    assert "golden recall: fail: 3 of 4 expected items found" in report
    missed = report.split("### Missed expected items (1)")[1].split("###")[0]
    assert "conversation 1 (golden-bob) profiles[1]" in missed
    assert "I'm vegetarian and cook every evening" in missed
    assert "profiles[2]" not in missed  # the Pixel fact was learned
    assert summary.read_text() == report
    assert scratch_calls > 0  # the scratch server learned through the test's stand-in
    assert seeded_stack.llm.state.run_calls() == checked_calls
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)
    assert load_record(seeded_stack.url) is None
    output = capsys.readouterr()
    assert KEY not in report + output.out + output.err


def test_the_same_check_with_the_original_prompt_passes(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
) -> None:
    """The scratch server is given (a stack the test starts, scripted alike)."""
    original = {"profile_extractor_config": SEEDED_CONFIG["profile_extractor_config"]}
    with LocalStack() as scratch:
        _script(scratch.llm)
        code, report = _check(seeded_stack, tmp_path, original, "--golden-server-url", scratch.url)
        with ReflexioClient(ReflexioSettings(url=scratch.url)) as client:
            bob = {p.content for p in client.list_profiles("current", user_id="golden-bob")}

    assert code == 0, report
    assert report.startswith("# Prompt check: PASS"), report
    assert "## Golden set: PASS" in report
    assert "golden recall: pass: 4 of 4 expected items found" in report
    assert "### Missed expected items (0)" in report
    assert "Bob here. I'm vegetarian and cook every evening." in bob
