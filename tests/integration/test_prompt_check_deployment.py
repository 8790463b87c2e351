"""What CI runs: `reflexio-pipelines trigger-prompt-check`, which runs the prompt-check
deployment with the candidate config's text as a parameter and exits with the run's verdict.

The deployment is served by a real Prefect runner (tests/reliability/served.py,
`flow.serve`: each run in a child process, as a worker runs it, with the parameter schema
enforced by the API), against the real Reflexio server. One case in CI, the one CI must not
get wrong: a failing gate is a non-zero exit. A passing check's exit 0 is the same code path
(`Verdict.PASS` from a Completed run); its in-process twin is test_prompt_change.py's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from flows.cli import main
from flows.prompt_change import describe_config
from local_stack.stack import LocalStack
from tasks.check_record import load_record
from tests.integration.test_prompt_change import CANDIDATE, _config_and_counts
from tests.reliability.helpers import prefect_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "prompt-change/ci-trigger"


def _deployment_ready() -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            return False
        return True


def _serve(url: str, backups: Path, log: Path) -> subprocess.Popen[bytes]:
    """The prompt-check deployment on a runner, with the server and backup location as the
    deployment's parameters (what prefect.yaml's deployment per server sets)."""
    parameters = json.dumps({"reflexio_url": url, "backup_dir": str(backups)})
    name = DEPLOYMENT.split("/", 1)[1]
    env = {**prefect_env(), "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.served", name, "prompt-check", parameters],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_failing_gate_in_the_triggered_deployment_exits_1(
    seeded_stack: LocalStack,
    prefect_api: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "candidate.yaml"
    config.write_text(CANDIDATE)
    report = tmp_path / "report.md"
    trigger = ["trigger-prompt-check", "--config", str(config), "--report", str(report)]

    # No such deployment: bad input, said, nothing run.
    assert main([*trigger, "--deployment", "prompt-change/nowhere"]) == 3
    assert "no deployment prompt-change/nowhere" in capsys.readouterr().err

    config_before, counts_before = _config_and_counts(seeded_stack.url)
    seeded_stack.llm.configure(style="junk")
    backups = tmp_path / "team-backups"
    served = _serve(seeded_stack.url, backups, tmp_path / "served.log")
    try:
        deadline = time.monotonic() + 120
        while not _deployment_ready():
            assert time.monotonic() < deadline, (tmp_path / "served.log").read_text()
            time.sleep(0.5)
        report.unlink(missing_ok=True)
        code = main([*trigger, "--deployment", DEPLOYMENT, "--timeout", "600"])
    finally:
        os.killpg(served.pid, signal.SIGKILL)
        served.wait(timeout=30)
    output = capsys.readouterr()

    text = report.read_text()
    assert code == 1, (text, output.out, output.err)
    assert text.startswith("# Prompt check: FAIL"), text
    assert describe_config(CANDIDATE) in text  # the run checked this file's text
    assert "The check undid itself: put the original config back" in text
    assert "prompt-check: FAIL (run Failed)" in output.out
    assert "extraction_definition_prompt" not in output.out + output.err  # config not shown
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)
    assert load_record(seeded_stack.url) is None
