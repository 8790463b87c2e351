"""Where the code comes from and what each server gets: prefect.yaml's pull step, the docker
pool's deployments (deploy/docker.yaml, one per server) and the Dockerfile they build.

The Dockerfile's steps themselves run in CI through scripts/dockerfile_steps.py
(`make image-steps`); here each step is checked against the repository and the lock file.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[3]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DOCKER_YAML = yaml.safe_load((ROOT / "deploy" / "docker.yaml").read_text())
DOCKER_DEPLOYMENTS: list[dict[str, Any]] = DOCKER_YAML["deployments"]


def _steps_module():
    spec = importlib.util.spec_from_file_location(
        "dockerfile_steps", ROOT / "scripts" / "dockerfile_steps.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


STEPS = _steps_module()
DOCKERFILE = STEPS.instructions(ROOT / "Dockerfile")


def _step(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [s[name] for s in steps if name in s]
    return found


def test_each_run_clones_the_repository_and_ref_the_prefect_variables_name():
    clone = _step(PREFECT_YAML["pull"], "prefect.deployments.steps.git_clone")
    assert clone["repository"] == "{{ prefect.variables.reflexio_pipelines_repo }}"
    assert clone["branch"] == "{{ prefect.variables.reflexio_pipelines_ref }}"
    assert PREFECT_YAML["build"] is None and PREFECT_YAML["push"] is None
    assert not [d["name"] for d in PREFECT_YAML["deployments"] if "pull" in d]


@pytest.mark.parametrize("deployment", DOCKER_DEPLOYMENTS, ids=lambda d: d["name"])
def test_docker_deployments_fit_their_flow(deployment: dict[str, Any], monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    flow.validate_parameters(deployment.get("parameters") or {})
    assert all(s.get("slug") and s.get("timezone") for s in deployment["schedules"])


def test_each_server_has_its_own_url_key_block_backups_and_notification_block():
    envs = [d["work_pool"]["job_variables"]["env"] for d in DOCKER_DEPLOYMENTS]
    assert len(envs) >= 2
    for key in ("REFLEXIO_URL", "REFLEXIO_API_KEY_BLOCK", "REFLEXIO_BACKUP_DIR"):
        values = [env[key] for env in envs]
        assert len(set(values)) == len(values), key
    assert all("://" in env["REFLEXIO_BACKUP_DIR"] for env in envs), "not the container's disk"
    blocks = [d["parameters"]["notification_block"] for d in DOCKER_DEPLOYMENTS]
    assert len(set(blocks)) == len(blocks)
    pools = {d["work_pool"]["name"] for d in DOCKER_DEPLOYMENTS}
    assert len(pools) == 1, "several servers from one pool"
    slugs = [s["slug"] for d in DOCKER_DEPLOYMENTS for s in d["schedules"]]
    assert len(set(slugs)) == len(slugs)


def test_docker_deployments_run_the_image_they_build_from_its_workdir():
    build = _step(DOCKER_YAML["build"], "prefect_docker.deployments.steps.build_docker_image")
    assert (ROOT / build["dockerfile"]).is_file()
    assert build["image_name"] == "{{ $REFLEXIO_PIPELINES_IMAGE }}"
    push = _step(DOCKER_YAML["push"], "prefect_docker.deployments.steps.push_docker_image")
    assert push["image_name"] == "{{ build-image.image_name }}"
    for deployment in DOCKER_DEPLOYMENTS:
        assert deployment["work_pool"]["job_variables"]["image"] == "{{ build-image.image }}"
    workdir = _step(DOCKER_YAML["pull"], "prefect.deployments.steps.set_working_directory")
    assert [a for k, a in DOCKERFILE if k == "WORKDIR"] == [workdir["directory"]]


def test_the_image_installs_the_runtime_lock_then_the_project_without_resolving():
    runs = [a for k, a in DOCKERFILE if k == "RUN" and a.startswith("pip ")]
    assert runs == [
        "pip install --require-hashes -r requirements.lock",
        "pip install --no-deps .",
    ]
    assert ("FROM", "python:3.11-slim") in DOCKERFILE


def test_the_image_holds_every_package_the_flows_import():
    copied = set()
    for sources in (a.split()[:-1] for k, a in DOCKERFILE if k == "COPY"):
        for source in sources:
            assert (ROOT / source).exists(), source
            copied.add(source.rstrip("/"))
    imported = set()
    for package in ("reflexio_api", "gate", "core", "tasks", "flows", "deployments"):
        for path in (ROOT / package).rglob("*.py"):
            imported |= set(re.findall(r"^(?:from|import) (\w+)", path.read_text(), re.M))
    ours = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    # local_stack too: the golden stage starts its scratch server from it (flows/golden_stage.py).
    assert imported & ours <= copied


def test_no_secret_is_baked_into_the_image():
    for keyword, argument in DOCKERFILE:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"KEY|TOKEN|SECRET|PASSWORD|WEBHOOK", argument, re.I), argument
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line]
    first = next(line for line in patterns if not line.startswith("#"))
    assert first == "*", "the build context must start from nothing: no .state, backups, .env"


def test_a_step_the_script_cannot_reproduce_is_refused(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\nRUN apt-get install -y git\n")
    with pytest.raises(STEPS.StepFailed, match="RUN apt-get install -y git: only pip steps"):
        STEPS.build(dockerfile, tmp_path / "image")
    dockerfile.write_text("FROM python:3.11-slim\nCOPY missing/ missing/\n")
    with pytest.raises(STEPS.StepFailed, match="missing/ is not in the repository"):
        STEPS.build(dockerfile, tmp_path / "image2")
