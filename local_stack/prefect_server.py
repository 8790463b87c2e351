"""A real `prefect server start` on loopback (API, UI and its services: automations, triggers),
in a throwaway PREFECT_HOME, for the browser check, the automation tests and the benches.

The test harness's ephemeral server runs no services, so automations never fire there; this
one is the server an operator runs, on a free port, stopped with its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """This process's environment for a Prefect process using `home`, analytics off, talking
    to `api_url` (None: no API URL, i.e. the server itself)."""
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    env.pop("PREFECT_API_KEY", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


@dataclass
class PrefectServer:
    """`prefect server start` on a free loopback port; use as a context manager."""

    work_dir: Path | None = None
    startup_timeout_s: float = 120.0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    @property
    def home(self) -> Path:
        return self._dir / "prefect-home"

    @property
    def log_file(self) -> Path:
        return self._dir / "prefect-server.log"

    def __post_init__(self) -> None:
        self._dir = self.work_dir or Path(tempfile.mkdtemp(prefix="prefect-server-"))

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> PrefectServer:
        """Start and wait until /health answers; RuntimeError with the log's tail if not."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = prefect_env(self.home)
        # The UI asks its API URL from these (not from the CLI flags).
        env.update(
            PREFECT_UI_API_URL=self.api_url,
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.port),
            # SQLite's lock wait (default 10 s): on a loaded 2-core machine a resume from
            # the UI hit "database is locked" and the UI showed "Something went wrong".
            PREFECT_SERVER_DATABASE_TIMEOUT="60",
        )
        command = [sys.executable, "-m", "prefect", "server", "start"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited {self.process.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"prefect server not healthy in {self.startup_timeout_s:g} s:\n{self.tail()}"
        )

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM its process group; SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
