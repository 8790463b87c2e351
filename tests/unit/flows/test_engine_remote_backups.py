"""The engine with backup_dir an fsspec URL (fsspec's memory file system stands in for S3):
every backup file lands there before the first write, the rollback and the H6 put-back read
from there, and a failed upload stops the run before it writes anything."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from core.backup import BackupError
from core.backup_store import FsspecStore
from core.outcome import Decision, RegenerationOutcome
from tests.unit.flows.fake_server import FakeOps, freeze_backup_clock, playbook
from tests.unit.flows.test_engine import USERS, engine, fact, playbooks_ops, profiles_ops
from tests.unit.flows.test_engine_live import rerun_with_live_traffic


def run(ops: FakeOps, backup_dir: str) -> RegenerationOutcome:
    return engine(ops, backup_dir).run()  # type: ignore[arg-type]


@pytest.fixture
def remote(tmp_path: Path) -> str:
    return f"memory://engine-{tmp_path.name}/backups"


def test_every_backup_file_is_remote_and_the_rollback_reads_from_there(
    remote: str, monkeypatch: pytest.MonkeyPatch
):
    # The live part is named `<stem>-live` only when it starts in the same UTC second as the
    # main backup; a run that crossed a second boundary between the two had no such file.
    freeze_backup_clock(monkeypatch)
    ops = profiles_ops(
        rerun=rerun_with_live_traffic, upgrade_skips={"p-0-0"}, downgrade_raises=True
    )
    archived_before = ops.ids("archived")
    outcome = run(ops, remote)

    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert archived_before <= ops.ids("archived"), "re-created from the remote backup"
    assert outcome.backup is not None and outcome.backup.startswith(remote + "/profiles-")
    stem = outcome.backup.rsplit("/", 1)[1].removesuffix(".manifest.json")
    assert FsspecStore(remote).list() == sorted(
        [
            f"{stem}.jsonl.gz",
            f"{stem}.manifest.json",
            f"{stem}.touched.json.gz",
            f"{stem}-live.jsonl.gz",
            f"{stem}-live.manifest.json",
        ]
    )
    assert not list(Path(tempfile.gettempdir()).glob(f"{stem}*")), "no staged file is left"


def test_the_backup_is_uploaded_whole_before_the_first_write(
    remote: str, monkeypatch: pytest.MonkeyPatch
):
    ops = profiles_ops()
    move_in, write_bytes = FsspecStore.move_in, FsspecStore.write_bytes

    def log(name: str) -> None:
        what = name.split(".", 1)[1].split(".")[0]  # jsonl, manifest or touched
        ops.calls.append(f"uploaded {what}")

    def logged_move_in(store: FsspecStore, local: Path, name: str) -> None:
        move_in(store, local, name)
        log(name)

    def logged_write(store: FsspecStore, name: str, data: bytes) -> None:
        write_bytes(store, name, data)
        log(name)

    monkeypatch.setattr(FsspecStore, "move_in", logged_move_in)
    monkeypatch.setattr(FsspecStore, "write_bytes", logged_write)
    outcome = run(ops, remote)

    assert outcome.decision is Decision.UPGRADED, outcome.message
    first_write = next(i for i, c in enumerate(ops.calls) if c in ops.writes())
    uploads = [c for c in ops.calls[:first_write] if c.startswith("uploaded")]
    assert uploads == ["uploaded jsonl", "uploaded manifest"], "data first, manifest last"
    assert ops.calls.index("uploaded touched") < ops.calls.index("upgrade")


def test_a_failed_upload_stops_the_run_before_any_write_and_looks_unfinished(
    remote: str, monkeypatch: pytest.MonkeyPatch
):
    def cut_off(store: FsspecStore, local: Path, name: str) -> None:
        store.fs.pipe_file(f"{store.root}/{name}", local.read_bytes()[:100])
        raise OSError(f"Uploading to {store.location(name)} failed: ConnectionError: reset")

    monkeypatch.setattr(FsspecStore, "move_in", cut_off)
    ops = profiles_ops()
    with pytest.raises(BackupError, match=r"Cannot write .*reset.*stopped before its next write"):
        run(ops, remote)

    assert ops.writes() == []
    assert FsspecStore(remote).list() == [], "the half upload is removed, no manifest"


def test_playbook_rows_the_rerun_tombstoned_come_back_from_the_remote_backup(remote: str):
    ops = playbooks_ops(rerun=lambda ops: [playbook(500, USERS[0], fact(USERS[0], 0), "pending")])
    before = {(r["user_id"], r["content"]) for r in ops.rows.values() if r["status"] is None}
    outcome = run(ops, remote)

    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    now = {(ops.rows[i]["user_id"], ops.rows[i]["content"]) for i in ops.ids("current")}
    assert now == before
