"""The nightly's optional golden stage, end to end: a profile regeneration of the seeded
server (the session stack) with a golden file learns the golden set on a scratch server
(a second stack, given as golden_server_url: a run's own server is refused as its scratch
server) with the checked server's CURRENT learning config, and the stand-in scripted to
forget a fact under that config's prompt. The run is not upgraded, names the fact, and
writes nothing to the checked server.

One case in CI, about 30 s (the scratch stack's start, ~7 s, and one golden learning
round); the passing side is covered by the unit tests (tests/unit/flows/test_golden_nightly.py)
and the prompt check's golden test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.outcome import Decision, RegenerationOutcome
from flows.profile_regeneration import profile_regeneration
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.conftest import SEEDED_CONFIG
from tests.integration.pipeline_helpers import config_bytes, rows_by_id
from tests.integration.test_prompt_check_golden import GOLDEN, WORSE_PROMPT, _script

pytestmark = pytest.mark.integration


def test_a_nightly_whose_config_misses_a_golden_fact_is_not_upgraded_and_names_it(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
) -> None:
    url = seeded_stack.url
    golden = tmp_path / "golden.yaml"
    golden.write_text(yaml.safe_dump(GOLDEN))
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        client.update_config(
            {
                "profile_extractor_config": {
                    **SEEDED_CONFIG["profile_extractor_config"],  # type: ignore[dict-item]
                    "extraction_definition_prompt": WORSE_PROMPT,
                }
            }
        )
    try:
        config_before, rows_before = config_bytes(url), rows_by_id(url)
        with LocalStack() as scratch:
            _script(scratch.llm)  # forgets diet facts when the prompt is WORSE_PROMPT
            state = profile_regeneration(
                reflexio_url=url,
                backup_dir=str(tmp_path / "backups"),
                golden_file=str(golden),
                golden_server_url=scratch.url,
                return_state=True,
            )
            scratch_calls = sum(scratch.llm.state.calls.values())
        config_after, rows_after = config_bytes(url), rows_by_id(url)
    finally:
        with ReflexioClient(ReflexioSettings(url=url)) as client:
            client.set_config(SEEDED_CONFIG)

    assert state.is_failed(), state.message
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, RegenerationOutcome)
    assert outcome.decision is Decision.GATE_BLOCKED
    assert "Missed: 'I'm vegetarian and cook every evening'" in outcome.message
    assert "Not regenerated: nothing was written to the server." in outcome.message
    assert outcome.gate is not None
    missed = outcome.gate.markdown.split("### Missed expected items (1)")[1].split("###")[0]
    assert "conversation 1 (golden-bob) profiles[1]" in missed
    assert "profiles[2]" not in missed  # the Pixel fact was learned
    assert scratch_calls > 0  # the scratch server learned, with the checked server's prompt
    assert rows_after == rows_before  # every profile, by id, status and content
    assert config_after == config_before
    assert not (tmp_path / "backups").exists()  # not even a backup was taken
