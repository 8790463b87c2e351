"""The team's path, on a real `prefect server start`: `prefect deploy --all` from a clean clone
of the committed code, a process worker in another, empty directory that gets the code
through prefect.yaml's pull step (the Prefect Variables name the repository and ref), and
the nightly deployment completing against the real Reflexio server with its server and
backup location given as job variables (the per-server configuration).

Checked by id: every profile CURRENT or ARCHIVED before the run is in the backup the run
wrote where the job variables said, and CURRENT is now the run's new generation.
About 1-2 minutes; CI runs it (the only test of the pull step and the worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.backup import open_backup
from local_stack.prefect_server import PrefectServer, prefect_env
from tests.integration.pipeline_helpers import profile_rows, run_backup

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REF = "deploy-proof"
NIGHTLY = "profile-regeneration/nightly"


def nightly_run_parameters() -> dict[str, object]:
    """What the triggered run overrides: one place to adapt when parameters change shape.
    The server and backups come from job variables, not from here."""
    return {"on_warn": "upgrade"}


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real server whose scheduler is off: the only run is the one the test triggers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", "false")
        with PrefectServer(tmp_path_factory.mktemp("prefect-server")) as server:
            yield server


def _cli(server: PrefectServer, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`prefect ...` or `python -m ...` as a team member runs it in `cwd`; its stdout."""
    command = [sys.executable, "-m", *args]
    home = cwd.parent / f"{cwd.name}-prefect-home"  # outside: the worker's directory stays empty
    full_env = prefect_env(home, server.api_url) | (env or {})
    full_env.pop("PYTHONPATH", None)
    for name in [k for k in full_env if k.startswith("REFLEXIO_")]:
        full_env.pop(name)
    done = subprocess.run(
        command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_clone(target: Path) -> Path:
    """The committed code (CI's checkout is itself a clone), on its own branch REF."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", "-b", REF], check=True)
    return target


@pytest.mark.timeout(900)  # the session's stack may start first (minutes on a loaded box)
def test_a_worker_elsewhere_runs_the_nightly_from_the_repository(
    prefect_server: PrefectServer, seeded_stack, tmp_path: Path
):
    url = seeded_stack.url
    before = profile_rows(url, "current", "archived")
    source = _clean_clone(tmp_path / "source")
    backups = tmp_path / "team-backups"

    def deployer(*args: str, env: dict[str, str] | None = None) -> str:
        return _cli(prefect_server, source, *args, env=env)

    prefect = ("prefect", "--no-prompt")
    deployer("deployments.setup", env={"REFLEXIO_URL": url})
    deployer(*prefect, "variable", "set", "reflexio_pipelines_repo", str(source))
    deployer(*prefect, "variable", "set", "reflexio_pipelines_ref", REF)
    deployer(*prefect, "deploy", "--all")
    job_env = {"REFLEXIO_URL": url, "REFLEXIO_BACKUP_DIR": str(backups)}
    trigger = ("deployment", "run", NIGHTLY, "--params", json.dumps(nightly_run_parameters()))
    deployer(*prefect, *trigger, "--job-variable", f"env={json.dumps(job_env)}")

    with (
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
        get_client(sync_client=True) as client,
    ):
        (deployment,) = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["nightly"]))
        )
    assert deployment.pull_steps == [
        {
            "prefect.deployments.steps.git_clone": {
                "id": "clone",
                "repository": "{{ prefect.variables.reflexio_pipelines_repo }}",
                "branch": "{{ prefect.variables.reflexio_pipelines_ref }}",
            }
        }
    ], "the worker resolves the repository and ref when the run starts"

    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    pool = ("worker", "start", "--pool", "reflexio-pool", "--run-once", "--limit", "1")
    _cli(prefect_server, worker_dir, *prefect, *pool)

    with (
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
        get_client(sync_client=True) as client,
    ):
        (run,) = client.read_flow_runs()
    assert run.deployment_id == deployment.id
    assert run.state is not None and run.state.is_completed(), run.state
    assert os.listdir(worker_dir) == [], "the worker had no code: it came by the pull step"

    backup = open_backup(run_backup(backups, "profiles"))
    assert {r["profile_id"] for r in backup.iter_rows()} == {r["profile_id"] for r in before}
    after = {r["profile_id"] for r in profile_rows(url, "current")}
    assert after and after.isdisjoint({r["profile_id"] for r in before})
    assert not profile_rows(url, "pending")
