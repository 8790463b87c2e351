"""The local default: the stand-in LLM plus the pinned Reflexio server, started together."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from local_stack.bulk_seed import Seed, SeedResult, seed_rows
from local_stack.reflexio_server import ReflexioServer
from local_stack.server_venv import ensure_server_venv
from local_stack.stall import StallReason, clear_stall, set_stall
from local_stack.stand_in_llm import StandInLLM


@dataclass
class LocalStack:
    """A running stand-in LLM and Reflexio server on loopback; use as a context manager."""

    state_dir: Path | None = None
    port: int | None = None
    llm_port: int = 0
    api_key: str | None = None
    rate_limits: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    preload: bool = False
    """Fork server starts from a process that imported the server's libraries once (for a
    test suite that restores snapshots hundreds of times; see local_stack/preloaded.py)."""
    llm_calls_in_process: bool = False
    """The server calls the LLM in its own process, not in a child forked per call (for a
    test suite: see ReflexioServer.llm_calls_in_process)."""
    llm: StandInLLM = field(init=False)
    server: ReflexioServer = field(init=False)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Install the server if needed (~1 min, cached), then start both (~6 s)."""
        venv = ensure_server_venv()
        state = self.state_dir or Path(tempfile.mkdtemp(prefix="reflexio-stack-"))
        self.llm = StandInLLM(port=self.llm_port).start()
        self.server = ReflexioServer(
            venv,
            state,
            self.llm.base_url,
            port=self.port,
            api_key=self.api_key,
            rate_limits=self.rate_limits,
            extra_env=self.extra_env,
            preload=self.preload,
            llm_calls_in_process=self.llm_calls_in_process,
        )
        try:
            self.server.start()
        except Exception:
            self.server.close()
            self.llm.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server, then the stand-in."""
        self.server.close()
        self.llm.stop()

    @property
    def url(self) -> str:
        """The Reflexio server's URL (what REFLEXIO_URL should be)."""
        return self.server.url

    def _saved_folders(self) -> dict[str, Path]:
        """What a snapshot holds: the SQLite data and the config file, which lives apart."""
        return {"data": self.server.state_dir / "data", "configs": self.server.config_dir}

    def _snapshot_dir(self, name: str) -> Path:
        return self.server.state_dir / "snapshots" / name

    def snapshot(self, name: str) -> None:
        """Save the server's data and config (stopping it briefly) for ``restore``."""
        self.server.stop()
        target = self._snapshot_dir(name)
        shutil.rmtree(target, ignore_errors=True)
        for label, folder in self._saved_folders().items():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder, target / label)
        self.server.start()

    def restore(self, name: str) -> None:
        """Put back the data and config saved by ``snapshot`` and restart the server (~5 s).
        Both are replaced, so the server is killed rather than stopped (saves ~4 s)."""
        self.server.stop(graceful=False)
        source = self._snapshot_dir(name)
        for label, folder in self._saved_folders().items():
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(source / label, folder)
        self.llm.reset()
        self.server.start()

    def export_snapshot(self, name: str, target: Path) -> None:
        """Copy the snapshot ``name`` to ``target`` (another stack can ``import_snapshot``)."""
        shutil.copytree(self._snapshot_dir(name), target)

    def import_snapshot(self, name: str, source: Path) -> None:
        """Take an exported snapshot as this stack's snapshot ``name`` and ``restore`` it.
        The data holds no address: the server finds the stand-in LLM through its
        environment."""
        target = self._snapshot_dir(name)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        self.restore(name)

    def bulk_seed(self, specs: Sequence[Seed]) -> SeedResult:
        """Write rows straight into the server's DB (stopping it meanwhile, ~4 s + ~6 s)."""
        self.server.stop()
        try:
            return seed_rows(self.server.db_path, specs)
        finally:
            self.server.start()

    def set_stall(self, reason: StallReason, message: str = "stand-in stall") -> None:
        """Write a stall into the server's DB, as the server would for a Claude-CLI provider."""
        set_stall(self.server.db_path, reason, message)

    def clear_stall(self) -> None:
        """Clear the stall row."""
        clear_stall(self.server.db_path)
