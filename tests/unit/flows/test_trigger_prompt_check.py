"""`reflexio-pipelines trigger-prompt-check`: the triggered run's end becomes the exit code
(the run itself faked here; tests/integration/test_prompt_check_deployment.py runs a real
one)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import prefect.deployments
import pytest
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Crashed, Failed, Running

import flows.cli as cli
from flows.prompt_change import Verdict, report_title

CONFIG = "profile_extractor_config:\n  extraction_definition_prompt: be brief # sk-secret\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "candidate.yaml"
    path.write_text(CONFIG)
    return path


def _trigger(
    monkeypatch, config: Path, state: Any, report: str | None, *extra: str
) -> tuple[int, dict[str, Any]]:
    """The command's exit code, and what it asked run_deployment for."""
    sent: dict[str, Any] = {}

    def run_deployment(name: str, parameters: dict[str, Any], timeout: float | None) -> Any:
        sent.update(name=name, parameters=parameters, timeout=timeout)
        return SimpleNamespace(id=uuid4(), name="a-run", state=state)

    monkeypatch.setattr(prefect.deployments, "run_deployment", run_deployment)
    monkeypatch.setattr(cli, "_run_report", lambda flow_run_id: report)
    return cli.main(["trigger-prompt-check", "--config", str(config), *extra]), sent


@pytest.mark.parametrize(
    ("state", "report", "expected"),
    [
        (Completed(), f"{report_title(Verdict.PASS)}\n\nok\n", Verdict.PASS),
        (Failed(), f"{report_title(Verdict.FAIL)}\n\ngate\n", Verdict.FAIL),
        (Failed(name="Stalled"), f"{report_title(Verdict.STALL)}\n", Verdict.STALL),
        (Failed(), f"{report_title(Verdict.BUSY)}\n", Verdict.BUSY),
        (Crashed(), None, Verdict.ERROR),  # no report: the run died
        (Failed(), f"{report_title(Verdict.PASS)}\n", Verdict.ERROR),  # never a pass
        (Running(), None, Verdict.ERROR),  # not ended within --timeout
    ],
    ids=["pass", "fail", "stall", "busy", "crashed", "failed-pass", "timed-out"],
)
def test_the_exit_code_is_the_runs_verdict(monkeypatch, config, capsys, state, report, expected):
    code, _ = _trigger(monkeypatch, config, state, report, "--timeout", "5")
    assert code == int(expected)
    output = capsys.readouterr()
    assert "sk-secret" not in output.out + output.err


def test_only_the_given_parameters_are_sent_with_the_configs_text(monkeypatch, config, tmp_path):
    """The deployment's own parameters (server, backup location) stay its."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_chars: 20\n")
    _, sent = _trigger(
        monkeypatch,
        config,
        Completed(),
        None,
        "--agent-version",
        "v1",
        "--gate-policy",
        str(policy),
    )
    assert sent["name"] == "prompt-change/prompt-check" and sent["timeout"] is None
    parameters = sent["parameters"]
    assert parameters["candidate_config"] == CONFIG
    assert parameters["agent_version"] == "v1" and parameters["gate_policy"]["min_chars"] == 20
    assert not {"reflexio_url", "backup_dir", "lock_timeout_s"} & set(parameters)
    json.dumps(parameters)  # what the API is sent


def test_a_missing_deployment_is_bad_input(monkeypatch, config, capsys):
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise ObjectNotFound(http_exc=Exception("404"))

    monkeypatch.setattr(prefect.deployments, "run_deployment", missing)
    assert cli.main(["trigger-prompt-check", "--config", str(config)]) == int(Verdict.BAD_INPUT)
    assert "no deployment prompt-change/prompt-check" in capsys.readouterr().err


def test_bad_input_runs_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(prefect.deployments, "run_deployment", pytest.fail)
    code = cli.main(["trigger-prompt-check", "--config", str(tmp_path / "none.yaml")])
    assert code == int(Verdict.BAD_INPUT)
    assert "does not exist" in capsys.readouterr().err
