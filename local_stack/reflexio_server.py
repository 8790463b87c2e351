"""Start and stop the real Reflexio server on a loopback port (reflexio-server.md §2)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from local_stack.preloaded import ForkedServer, ForkServer
from local_stack.server_fork import die_with_parent
from local_stack.server_venv import server_python, shim_dir

READY_TIMEOUT_S = 60.0
START_ATTEMPTS = 2

IN_PROCESS_CALLS = """
import litellm

_completion = litellm.completion


def completion(*args, **kwargs):
    return _completion(*args, **kwargs)


litellm.completion = completion
"""
"""Appended to the server's sitecustomize when ``llm_calls_in_process``: litellm's
``completion`` behind a function of another module, which the server calls in its own
process as it does its unit tests' doubles (``_should_process_isolate_completion``)."""


class ServerStartError(RuntimeError):
    """The Reflexio server did not come up."""


class _StartupHung(ServerStartError):
    """The server process is alive but its startup never finished."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _signal_group(pid: int, sig: int) -> None:
    """Signal the server's process group; the process alone if it has none yet (a forked
    server before its setsid); nothing if it has gone (a forked one is reaped at once)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3.*/site-packages"))


class ReflexioServer:
    """One server process with its own state folder (SQLite DB, logs, HOME)."""

    def __init__(
        self,
        venv: Path,
        state_dir: Path,
        llm_base_url: str | None,
        port: int | None = None,
        api_key: str | None = None,
        rate_limits: bool = False,
        extra_env: Mapping[str, str] | None = None,
        provider_key: str = "sk-stand-in",
        preload: bool = False,
        llm_calls_in_process: bool = False,
    ) -> None:
        self.venv = venv
        self.state_dir = state_dir
        self.llm_base_url = llm_base_url
        """The stand-in (chat, embeddings and the inference-service contract); None: the
        provider's own API (OpenAI) for chat and embeddings, with `provider_key`."""
        self._provider_key = provider_key
        self.port = port or free_port()
        self.api_key = api_key
        self.rate_limits = rate_limits
        self.extra_env = dict(extra_env or {})
        """Server settings beyond the defaults, e.g. REFLEXIO_ROW_LIMIT_PROFILES for a
        server seeded with more than its 250,000-row retention cap."""
        self.llm_calls_in_process = llm_calls_in_process
        """Chat calls run in the server's process instead of a child process forked per
        call (its hard-timeout isolation against hung providers; takes effect at the next
        start when changed): that fork is most of a call's cost with the stand-in, which
        never hangs (measured on 2 cores: ~0.5 s a call idle, ~3 s at load 19; in-process
        ~0.05 s), and a fork beside a live request can hang (H18). For test suites; a
        production server, `make main` and the benches keep the server's own path."""
        self._process: subprocess.Popen[bytes] | ForkedServer | None = None
        self._fork_server = ForkServer(venv, self.log_path) if preload else None
        """With `preload`, starts fork a process that imported the server's libraries once
        (local_stack/server_fork.py): for suites that restart the server many times."""

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        """The server's SQLite database file."""
        return self.state_dir / "data" / "reflexio_self-host-org.db"

    @property
    def config_dir(self) -> Path:
        """Where the server keeps its config file (REFLEXIO_LOG_DIR/.reflexio/configs)."""
        return self.state_dir / "logs" / ".reflexio" / "configs"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.state_dir / "server.log"

    def environment(self) -> dict[str, str]:
        """The clean environment the server runs with."""
        site = _site_packages(self.venv)
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join(str(shim) for shim in self._shims()),
            "OPENAI_API_KEY": self._provider_key,
            "REFLEXIO_RERANK_ENABLED": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "TIKTOKEN_CACHE_DIR": str(site / "litellm" / "litellm_core_utils" / "tokenizers"),
            "HOME": str(self.state_dir),
            "REFLEXIO_LOG_DIR": str(self.state_dir / "logs"),
            "REFLEXIO_ENV_FILE": str(self.state_dir / "reflexio.env"),
            "LOCAL_STORAGE_PATH": str(self.state_dir / "data"),
            "RATELIMIT_ENABLED": "true" if self.rate_limits else "false",
            # SIGABRT then writes every thread's stack to server.log (see _dump_and_kill).
            "PYTHONFAULTHANDLER": "1",
        }
        if self.llm_base_url:
            env["OPENAI_BASE_URL"] = env["OPENAI_API_BASE"] = f"{self.llm_base_url}/v1"
            env["REFLEXIO_EMBEDDING_SERVICE_URL"] = self.llm_base_url
        if self.api_key:
            env["REFLEXIO_API_KEY"] = self.api_key
        return {**env, **self.extra_env}

    def _shims(self) -> list[Path]:
        """The server's PYTHONPATH: the venv's shim, after (with ``llm_calls_in_process``)
        a folder whose sitecustomize, found first, is the venv's with IN_PROCESS_CALLS
        appended."""
        shim = shim_dir(self.venv)
        if not self.llm_calls_in_process:
            return [shim]
        own = self.state_dir / "shim-in-process"
        own.mkdir(parents=True, exist_ok=True)
        text = (shim / "sitecustomize.py").read_text() + IN_PROCESS_CALLS
        (own / "sitecustomize.py").write_text(text)
        return [own, shim]

    def start(self) -> ReflexioServer:
        """Launch the server and wait until /health/ready answers 200. A startup that hangs
        (seen once in CI, after hundreds of restarts) leaves its thread stacks in server.log
        and is tried once more."""
        attempts_left = START_ATTEMPTS
        while True:
            self._launch()
            try:
                self._wait_ready()
                return self
            except _StartupHung:
                attempts_left -= 1
                if not attempts_left:
                    raise

    def _launch(self) -> None:
        work_dir = self.state_dir / "cwd"
        for folder in (work_dir, self.state_dir / "logs", self.state_dir / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "reflexio.env").touch()
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        if self._fork_server is not None:
            self._process = self._fork_server.fork(args, cwd=work_dir, env=self.environment())
            return
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(server_python(self.venv)), "-m", "reflexio.server", *args],
                cwd=work_dir,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServerStartError(
                    f"the Reflexio server exited with code {self._process.returncode} while "
                    f"starting; see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self._dump_and_kill()
        raise _StartupHung(
            f"the Reflexio server was not ready after {READY_TIMEOUT_S:.0f} s; its thread "
            f"stacks are at the end of {self.log_path}:\n{self.log_tail(lines=80)}"
        )

    def _dump_and_kill(self) -> None:
        """SIGABRT the hung server (faulthandler writes its stacks to the log), then kill it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.stop(graceful=False)

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the server log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM the server's process group (about 4 s) and SIGKILL it if it has not gone
        in 15 s; with graceful=False SIGKILL at once (for when its data is thrown away)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if graceful:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
                return
            except subprocess.TimeoutExpired:
                pass
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=5)

    def close(self) -> None:
        """Stop the server for good (and its fork server, if it has one)."""
        self.stop()
        if self._fork_server is not None:
            self._fork_server.close()

    def restart(self) -> None:
        """Stop and start again on the same port and state (data survives)."""
        self.stop()
        self.start()
