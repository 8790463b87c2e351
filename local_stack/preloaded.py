"""Start Reflexio server processes by forking one that imported the server's libraries once
(local_stack/server_fork.py), for suites that restart the server many times."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from local_stack.server_fork import die_with_parent
from local_stack.server_venv import server_python

FORK_PROGRAM = Path(__file__).with_name("server_fork.py")
IMPORT_TIMEOUT_S = 180.0
"""How long the fork server may take to import the libraries (about 4 s on an idle
machine, ten times that on a loaded one)."""


class ForkServerError(RuntimeError):
    """The fork server did not start or did not answer."""


class ForkedServer:
    """A server process forked by the fork server: not this process's child, so it is
    watched by pid (the fork server reaps it; its exit code is not known here: -1)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """None while the process runs, then -1."""
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -1
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait until the process has gone; subprocess.TimeoutExpired after `timeout` s."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"reflexio server pid {self.pid}", timeout)
            time.sleep(0.05)
        return -1


class ForkServer:
    """The fork server of one ReflexioServer: started on the first fork, started again
    when the server's environment changed (it is inherited from the fork server)."""

    def __init__(self, venv: Path, log_path: Path) -> None:
        self.venv = venv
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}

    def fork(self, args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> ForkedServer:
        """A new server process running `python -m reflexio.server <args>` in `cwd`, its
        output appended to the log."""
        if self._process is None or self._process.poll() is not None or env != self._env:
            self._start(env)
        request = {"args": list(args), "cwd": str(cwd), "log": str(self.log_path)}
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()
            return ForkedServer(int(self._read_line(30.0)))
        except (OSError, ValueError, ForkServerError) as exc:
            self.close()
            raise ForkServerError(f"the fork server did not fork a server: {exc!r}") from exc

    def close(self) -> None:
        """Stop the fork server (the servers it forked are stopped by their owner)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def _start(self, env: Mapping[str, str]) -> None:
        self.close()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(server_python(self.venv)), "-u", "-P", str(FORK_PROGRAM)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                stderr=log,
                env=dict(env),
                preexec_fn=die_with_parent,
            )
        self._env = dict(env)
        try:
            ready = self._read_line(IMPORT_TIMEOUT_S)
        except ForkServerError:
            self.close()  # a late "ready" must not be read as a pid
            raise
        if ready != "ready":
            self.close()
            raise ForkServerError(f"the fork server did not start; see {self.log_path}")

    def _read_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            raise ForkServerError(f"the fork server did not answer within {timeout:g} s")
        return self._process.stdout.readline().decode().strip()
