"""A cached venv holding the official Reflexio SDK (reflexio-client), for the benchmarks.

The SDK needs Python >= 3.12 while this project runs on 3.11, so it gets a venv of its own,
found and built the way local_stack/server_venv.py builds the server's: keyed on the pinned
version and the interpreter, built in a scratch folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from local_stack.server_venv import ServerInstallError, cache_root, find_server_python

SDK_PACKAGE = "reflexio-client"
SDK_VERSION = "0.2.16"


def sdk_venv_key(version: tuple[int, int]) -> str:
    """A short hash of what the venv holds."""
    text = f"{SDK_PACKAGE}=={SDK_VERSION} py{version[0]}.{version[1]}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_sdk_venv() -> Path:
    """The python of a ready SDK venv, built first when the cache has none."""
    python, version = find_server_python()
    target = cache_root() / f"sdk-venv-{sdk_venv_key(version)}"
    if not (target / ".complete").exists():
        scratch = target.with_name(target.name + f".building-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.parent.mkdir(parents=True, exist_ok=True)
        print(f"installing {SDK_PACKAGE}=={SDK_VERSION} into {target} ...", file=sys.stderr)
        _run([python, "-m", "venv", str(scratch)])
        pip = [str(scratch / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run([*pip, "--disable-pip-version-check", f"{SDK_PACKAGE}=={SDK_VERSION}"])
        (scratch / ".complete").write_text(f"{SDK_PACKAGE}=={SDK_VERSION}\n")
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return target / "bin" / "python"


def _run(command: list[str]) -> None:
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise ServerInstallError(f"`{' '.join(command[:6])} ...` exited {out.returncode}.\n{tail}")


if __name__ == "__main__":
    print(ensure_sdk_venv())
