"""ReflexioServer.start against a stand-in server program: a hung startup leaves its thread
stacks in the log, is tried once more, and never leaves a process behind, whether the server
is launched as a new process or forked by the fork server (preload)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

import local_stack.reflexio_server as reflexio_server
from local_stack.reflexio_server import IN_PROCESS_CALLS, ReflexioServer, ServerStartError

# Hangs on the first launch (a marker file counts launches); serves /health/ready after.
FAKE_SERVER = """
import os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

marker = Path("launches")
launches = int(marker.read_text()) + 1 if marker.exists() else 1
marker.write_text(str(launches))
Path(f"env-{launches}").write_text(os.environ.get("STAND_IN_SETTING", ""))
Path(f"pid-{launches}").write_text(str(os.getpid()))
print("Waiting for application startup.", flush=True)
if launches <= int(Path("hang_launches").read_text()):
    time.sleep(600)

class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Ready).serve_forever()
"""


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "lib" / "python3.13" / "site-packages").mkdir(parents=True)
    package = venv / "reflexio-shim" / "reflexio" / "server"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_SERVER)
    return venv


PRELOAD = pytest.mark.parametrize("preload", [False, True], ids=["launched", "forked"])


def _server(
    venv: Path, tmp_path: Path, hang_launches: int, preload: bool = False
) -> ReflexioServer:
    server = ReflexioServer(venv, tmp_path / "state", "http://127.0.0.1:9", preload=preload)
    (server.state_dir / "cwd").mkdir(parents=True)
    (server.state_dir / "cwd" / "hang_launches").write_text(str(hang_launches))
    return server


@PRELOAD
def test_a_hung_startup_is_dumped_and_tried_once_more(
    fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preload: bool
) -> None:
    monkeypatch.setattr(reflexio_server, "READY_TIMEOUT_S", 3.0)
    server = _server(fake_venv, tmp_path, hang_launches=1, preload=preload)
    server.start()
    try:
        log = server.log_path.read_text()
        assert "Fatal Python error: Aborted" in log
        assert '__main__.py", line 13 in <module>' in log
        assert (server.state_dir / "cwd" / "launches").read_text() == "2"
    finally:
        server.close()


@PRELOAD
def test_a_startup_that_hangs_twice_fails_with_the_stacks_and_no_process_left(
    fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preload: bool
) -> None:
    monkeypatch.setattr(reflexio_server, "READY_TIMEOUT_S", 3.0)
    server = _server(fake_venv, tmp_path, hang_launches=2, preload=preload)
    with pytest.raises(ServerStartError, match="not ready after 3 s") as raised:
        server.start()
    assert "Fatal Python error: Aborted" in str(raised.value)
    assert str(server.log_path) in str(raised.value)
    assert server._process is None
    assert (server.state_dir / "cwd" / "launches").read_text() == "2"
    assert not _alive(_pid(server, 1)) and not _alive(_pid(server, 2))
    server.close()


def _pid(server: ReflexioServer, launch: int) -> int:
    return int((server.state_dir / "cwd" / f"pid-{launch}").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_forked_servers_run_the_module_afresh_with_the_environment_of_their_start(
    fake_venv: Path, tmp_path: Path
) -> None:
    """Each start runs the server's module again in a new process (a restart is not the
    same process); a changed environment reaches the next start (the fork server is
    replaced); close() leaves neither a server nor the fork server behind."""
    server = _server(fake_venv, tmp_path, hang_launches=0, preload=True)
    cwd = server.state_dir / "cwd"
    try:
        server.start()
        fork_server = server._fork_server._process  # type: ignore[union-attr]
        server.restart()
        server.extra_env["STAND_IN_SETTING"] = "changed"
        server.restart()
        assert (cwd / "launches").read_text() == "3"
        assert [(cwd / f"env-{n}").read_text() for n in (1, 2, 3)] == ["", "", "changed"]
        assert len({_pid(server, n) for n in (1, 2, 3)}) == 3
        assert not _alive(_pid(server, 1)) and not _alive(_pid(server, 2))
        assert fork_server is not None and fork_server.poll() is not None  # replaced
        assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200
    finally:
        server.close()
    assert not _alive(_pid(server, 3))
    assert server._fork_server._process is None  # type: ignore[union-attr]


def test_the_environment_carries_the_provider_key_and_points_at_the_stand_in_only_when_given(
    fake_venv: Path, tmp_path: Path
) -> None:
    stand_in = ReflexioServer(fake_venv, tmp_path / "a", "http://127.0.0.1:9").environment()
    provider = ReflexioServer(
        fake_venv, tmp_path / "b", None, provider_key="sk-real-key"
    ).environment()

    assert stand_in["OPENAI_API_KEY"] == "sk-stand-in"
    assert stand_in["OPENAI_BASE_URL"] == "http://127.0.0.1:9/v1"
    assert stand_in["REFLEXIO_EMBEDDING_SERVICE_URL"] == "http://127.0.0.1:9"
    assert provider["OPENAI_API_KEY"] == "sk-real-key"
    assert not {"OPENAI_BASE_URL", "OPENAI_API_BASE", "REFLEXIO_EMBEDDING_SERVICE_URL"} & set(
        provider
    )


def test_llm_calls_in_process_put_litellm_completion_behind_another_module(
    fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_venv / "reflexio-shim" / "sitecustomize.py").write_text("VENV_SHIM = True\n")
    server = _server(fake_venv, tmp_path, hang_launches=0)
    assert server.environment()["PYTHONPATH"] == str(fake_venv / "reflexio-shim")

    server.llm_calls_in_process = True
    first, venv_shim = server.environment()["PYTHONPATH"].split(":")
    assert venv_shim == str(fake_venv / "reflexio-shim")
    text = (Path(first) / "sitecustomize.py").read_text()
    assert text == "VENV_SHIM = True\n" + IN_PROCESS_CALLS

    def completion(**kwargs: object) -> object:
        return kwargs

    completion.__module__ = "litellm.main"  # what the server checks: litellm's own
    fake = type(sys)("litellm")
    fake.completion = completion  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", fake)
    exec(compile(text, "sitecustomize.py", "exec"), {"__name__": "sitecustomize"})
    assert not fake.completion.__module__.startswith("litellm")  # type: ignore[attr-defined]
    assert fake.completion(model="m") == {"model": "m"}  # type: ignore[attr-defined]
