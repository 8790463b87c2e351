"""Install the pinned Reflexio server into a cached venv of its own (reflexio-server.md §1).

The server needs Python >= 3.12 while this project runs on 3.11, so it lives in another
venv, like a database would. A plain ``pip install reflexio-ai`` drags in torch and CUDA;
the HTTP server needs none of it, so the package goes in with ``--no-deps`` and the pins
below. The venv is keyed on the pins and the interpreter, built in a scratch folder and
renamed into place, so a half-built venv is never used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REFLEXIO_VERSION = "0.2.32"
SERVER_PINS = [
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.54.0",
    "pydantic[email]==2.14.4",
    "litellm==1.110.2",
    "openai==3.57.0",
    "httpx==0.28.1",
    "aiohttp==3.14.5",
    "tiktoken==0.14.0",
    "slowapi==0.1.10",
    "sqlite-vec==0.1.9",
    "pysqlite3-binary==0.5.4.post2",
    "numpy==2.5.5",
    "scikit-learn==1.9.1",
    "python-dotenv==1.2.4",
    "cachetools==8.0.2",
    "colorlog==6.12.0",
    "json-repair==0.64.6",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "redis==8.1.0",
    "cryptography==50.0.2",
    "typer==0.29.2",
    "rich==15.0.0",
]

# The pyenv CPython cannot load SQLite extensions; pysqlite3-binary can. Aliasing it as
# sqlite3 before the server imports anything lets sqlite-vec load (playbook aggregation).
SITECUSTOMIZE = """\
import sys
try:
    import pysqlite3
    import pysqlite3.dbapi2
except ImportError:
    pass
else:
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2
"""

MIN_PYTHON = (3, 12)


class ServerInstallError(RuntimeError):
    """The Reflexio server venv could not be made."""


def cache_root() -> Path:
    """Where cached venvs live: $REFLEXIO_PIPELINES_CACHE or ~/.cache/reflexio-pipelines."""
    configured = os.environ.get("REFLEXIO_PIPELINES_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "reflexio-pipelines"


def _version_of(python: str) -> tuple[int, int] | None:
    env = {k: v for k, v in os.environ.items() if k != "PYENV_VERSION"}
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def _candidates() -> list[str]:
    found: list[str] = []
    if configured := os.environ.get("REFLEXIO_SERVER_PYTHON"):
        found.append(configured)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            pyenv_root = out.stdout.strip()
    versions = Path(pyenv_root) / "versions"
    if versions.is_dir():
        found.extend(
            str(p / "bin" / "python")
            for p in sorted(versions.iterdir(), reverse=True)
            if re.fullmatch(r"3\.\d+\.\d+", p.name)
        )
    for name in ("python3.13", "python3.12", "python3"):
        if path := shutil.which(name):
            found.append(path)
    for base in ("/usr/bin", "/usr/local/bin"):
        found.extend(str(p) for p in sorted(Path(base).glob("python3.1[2-9]"), reverse=True))
    return list(dict.fromkeys(found))


def find_server_python() -> tuple[str, tuple[int, int]]:
    """A Python >= 3.12 on this machine (pyenv's included) and its version.

    Raises ServerInstallError naming what was tried when there is none.
    """
    tried = _candidates()
    for python in tried:
        version = _version_of(python)
        if version and version >= MIN_PYTHON:
            return python, version
    raise ServerInstallError(
        "The Reflexio server needs Python >= 3.12 and none was found. Tried: "
        + (", ".join(tried) or "nothing")
        + ". Install one (for example `pyenv install 3.12`) or set REFLEXIO_SERVER_PYTHON "
        "to its path."
    )


def venv_key(version: tuple[int, int]) -> str:
    """A short hash of what the venv holds, so a change of pins builds a new one."""
    text = " ".join([f"reflexio-ai=={REFLEXIO_VERSION}", *SERVER_PINS, SITECUSTOMIZE])
    text += f" py{version[0]}.{version[1]}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def server_python(venv: Path) -> Path:
    """The interpreter inside a server venv."""
    return venv / "bin" / "python"


def shim_dir(venv: Path) -> Path:
    """The folder holding sitecustomize.py, to put on the server's PYTHONPATH."""
    return venv / "reflexio-shim"


def ensure_server_venv(log: bool = True) -> Path:
    """Return a ready server venv, building it first when the cache has none (~10 s with
    uv, ~1 min with pip)."""
    python, version = find_server_python()
    target = cache_root() / f"server-venv-{venv_key(version)}"
    if (target / ".complete").exists():
        return target
    scratch = target.with_name(target.name + f".building-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    if log:
        print(f"installing reflexio-ai=={REFLEXIO_VERSION} into {target} ...", file=sys.stderr)
    _run([python, "-m", "venv", str(scratch)])
    install = _installer(server_python(scratch))
    _run([*install, "--no-deps", f"reflexio-ai=={REFLEXIO_VERSION}"])
    _run([*install, *SERVER_PINS])
    shim_dir(scratch).mkdir()
    (shim_dir(scratch) / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (scratch / ".complete").write_text(f"reflexio-ai=={REFLEXIO_VERSION}\n")
    if (target / ".complete").exists():  # another process finished first
        shutil.rmtree(scratch, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)
    # Only bin/python is used (`python -m reflexio.server`), and it finds its venv through
    # pyvenv.cfg beside it, so the renamed venv works; console-script shebangs are unused.
    scratch.rename(target)
    return target


def _installer(python: Path) -> list[str]:
    """The install command for the venv of `python`: the uv that `make` puts beside this
    interpreter (~8 s: it leaves bytecode to the first import, where pip compiles every
    module up front), else that venv's pip (~1 min)."""
    uv = Path(sys.executable).with_name("uv")
    if uv.exists():
        return [str(uv), "pip", "install", "-q", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]


def _run(command: list[str]) -> None:
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise ServerInstallError(
            f"installing the Reflexio server failed: `{' '.join(command[:6])} ...` exited "
            f"{out.returncode}.\n{tail}\nCheck that PyPI is reachable, then run again."
        )
