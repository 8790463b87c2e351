"""Perform the Dockerfile's build steps without docker (CI has none), then check the result.

    python scripts/dockerfile_steps.py [--dockerfile Dockerfile] [--keep DIR]

Each instruction as docker would do it, into a temporary image root and a fresh venv of this
interpreter (which must be the FROM image's Python version):

- FROM python:<X.Y>[-variant]: this interpreter must be Python X.Y;
- WORKDIR: a directory under the image root; COPY: the same paths from the repository (a
  missing source fails, as in docker); ENV: set for the RUN steps that follow, except
  PIP_NO_CACHE_DIR (pip's cache here only saves downloads; what is installed is the same);
- RUN: `pip ...` runs with the venv's pip in WORKDIR; `useradd` (a system user) and USER are
  skipped; any other command fails here: teach this script to perform it first.

Then, as a worker in the image would: `pip check`, and every flow that prefect.yaml and
deploy/docker.yaml name is loaded from WORKDIR with the venv's Python.
Exit 0 when every step ran and the checks passed; 1 naming the step that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT_FILES = ("prefect.yaml", "deploy/docker.yaml")
SKIPPED_RUN = ("useradd",)
SPEED_ONLY_ENV = ("PIP_NO_CACHE_DIR",)
LOAD_FLOWS = (
    "import json, sys\n"
    "from prefect.flows import load_flow_from_entrypoint\n"
    "print(json.dumps([load_flow_from_entrypoint(e).name for e in sys.argv[1:]]))\n"
)


class StepFailed(Exception):
    """A Dockerfile step that did not do what docker would."""


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@dataclass
class Image:
    """The image being built: its root, working directory, environment and venv."""

    root: Path
    workdir: Path = field(init=False)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = self.root

    @property
    def bin(self) -> Path:
        return self.root / "venv" / "bin"

    def run_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(self.env, PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}")
        env.setdefault("PREFECT_HOME", str(self.root / "prefect-home"))
        return env


def _from(image: Image, argument: str) -> None:
    match = re.fullmatch(r"python:(\d+)\.(\d+)(?:\.\d+)?(?:-[\w.-]+)?", argument)
    if not match:
        raise StepFailed(f"FROM {argument}: only python:<X.Y> images can be reproduced here")
    wanted = (int(match.group(1)), int(match.group(2)))
    if sys.version_info[:2] != wanted:
        raise StepFailed(
            f"FROM {argument}: run this script with Python {wanted[0]}.{wanted[1]} "
            f"(this is {sys.version_info[0]}.{sys.version_info[1]})"
        )
    venv.create(image.root / "venv", with_pip=True)


def _copy(image: Image, argument: str) -> None:
    *sources, destination = shlex.split(argument)
    target = image.workdir / destination
    for source in sources:
        origin = ROOT / source
        if not origin.exists():
            raise StepFailed(f"COPY {argument}: {source} is not in the repository")
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / origin.name)


def _run(image: Image, argument: str) -> None:
    command = shlex.split(argument)[0]
    if command in SKIPPED_RUN:
        print(f"  skipped: {command} (a system user, created only in the image)")
        return
    if command != "pip":
        raise StepFailed(f"RUN {argument}: only pip steps can be reproduced in a venv")
    done = subprocess.run(argument, shell=True, cwd=image.workdir, env=image.run_env())
    if done.returncode != 0:
        raise StepFailed(f"RUN {argument}: exit {done.returncode}")


def _env(image: Image, argument: str) -> None:
    for pair in shlex.split(argument):
        key, _, value = pair.partition("=")
        if key not in SPEED_ONLY_ENV:
            image.env[key] = value


def _workdir(image: Image, argument: str) -> None:
    image.workdir = image.root / argument.lstrip("/")
    image.workdir.mkdir(parents=True, exist_ok=True)


STEPS = {"FROM": _from, "COPY": _copy, "RUN": _run, "ENV": _env, "WORKDIR": _workdir}


def entrypoints() -> list[str]:
    """Every flow entrypoint the deployment files name."""
    found: list[str] = []
    for name in DEPLOYMENT_FILES:
        config = yaml.safe_load((ROOT / name).read_text())
        found += [d["entrypoint"] for d in config["deployments"]]
    return list(dict.fromkeys(found))


def check(image: Image) -> list[str]:
    """`pip check`, then load every flow from WORKDIR; the flows' names."""
    python = str(image.bin / "python")
    for command in ([python, "-m", "pip", "check"], [python, "-c", LOAD_FLOWS, *entrypoints()]):
        done = subprocess.run(
            command, cwd=image.workdir, env=image.run_env(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise StepFailed(f"{' '.join(command[:3])}: {done.stdout}{done.stderr}".strip())
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(dockerfile: Path, root: Path) -> list[str]:
    """Perform every step into `root`, check the result; the loaded flows' names."""
    image = Image(root)
    for keyword, argument in instructions(dockerfile):
        print(f"{keyword} {argument}", flush=True)
        if keyword == "USER":
            print("  skipped: steps run as this user")
            continue
        if keyword not in STEPS:
            raise StepFailed(f"{keyword} {argument}: not reproduced by this script")
        STEPS[keyword](image, argument)
    return check(image)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="image-steps-"))
    try:
        flows = build(args.dockerfile, root)
    except StepFailed as exc:
        print(f"dockerfile step failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"every step ran; the image's venv loads {len(flows)} flows: {', '.join(flows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
