"""Backup stores: a local directory and an fsspec URL (fsspec's memory file system) behave
alike; writes are whole or absent; a remote backup is finished only with its manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from core.backup import BackupError, BackupWriter, open_backup
from core.backup_store import (
    BackupStore,
    FsspecStore,
    LocalStore,
    open_store,
    split_location,
)

URL = "http://127.0.0.1:8081"
ROWS = [{"profile_id": f"p-{i}", "user_id": "ann", "status": None} for i in range(50)]


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackupStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "backups")
    else:
        yield FsspecStore(f"memory://store-{tmp_path.name}/backups")


def test_files_round_trip_and_list_delete(store: BackupStore):
    assert store.list() == [] and not store.exists("a.json")
    store.write_bytes("a.json", b"one")
    store.write_bytes("a.json", b"two")
    store.append_bytes("log.jsonl", b"x\n")
    store.append_bytes("log.jsonl", b"y\n")

    assert store.read_bytes("a.json") == b"two"
    assert store.read_bytes("log.jsonl") == b"x\ny\n"
    assert store.list() == ["a.json", "log.jsonl"], "no temporary file is left"
    store.delete("a.json")
    store.delete("a.json")
    assert store.list() == ["log.jsonl"] and not store.exists("a.json")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a.json")


def test_move_in_puts_a_staged_file_in_place(store: BackupStore):
    staged = store.staging_dir() / "staged-move-in.bin"
    staged.write_bytes(b"rows" * 1000)
    store.move_in(staged, "data.bin")
    assert store.read_bytes("data.bin") == b"rows" * 1000
    assert not staged.exists()


def test_a_backup_round_trips_through_either_store(store: BackupStore):
    with BackupWriter(store, "profiles", URL, "run-1234abcd") as writer:
        writer.write(ROWS[:20])
        writer.write(ROWS[20:])
    info = writer.info
    assert store.list() == sorted([info.data_name, info.manifest_name])
    assert info.manifest_path == store.location(info.manifest_name)

    for backup in (open_backup(info.manifest_name, store), open_backup(info.data_path)):
        assert backup.total == 50 and list(backup.iter_rows()) == ROWS


def test_a_remote_backup_without_its_manifest_is_unfinished(tmp_path: Path):
    store = FsspecStore(f"memory://half-{tmp_path.name}")
    with BackupWriter(store, "profiles", URL, "run-1") as writer:
        writer.write(ROWS)
    store.delete(writer.info.manifest_name)  # as if the run died between the two uploads
    with pytest.raises(BackupError, match="Missing manifest"):
        open_backup(writer.info.data_path)


def test_a_changed_remote_data_file_is_caught(tmp_path: Path):
    store = FsspecStore(f"memory://changed-{tmp_path.name}")
    with BackupWriter(store, "profiles", URL, "run-1") as writer:
        writer.write(ROWS)
    data = store.read_bytes(writer.info.data_name)
    store.write_bytes(writer.info.data_name, data[: len(data) // 2])
    with pytest.raises(BackupError, match="is truncated"):
        list(open_backup(writer.info.manifest_path).iter_rows())


def test_an_upload_that_arrives_short_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = FsspecStore(f"memory://short-{tmp_path.name}")
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"0123456789")
    monkeypatch.setattr(
        type(store.fs), "put_file", lambda fs, lpath, rpath, **kw: fs.pipe_file(rpath, b"01234")
    )
    with pytest.raises(OSError, match="5 of 10 bytes arrived"):
        store.move_in(staged, "data.bin")
    assert staged.exists(), "the local copy is kept when the upload failed"


def test_file_system_errors_name_the_location_never_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = FsspecStore(
        f"memory://creds-{tmp_path.name}", {"skip_instance_cache": True}, label="block:backups"
    )

    class Denied(Exception):
        pass

    def denied(fs: object, path: str, data: bytes, **kw: object) -> None:
        raise Denied("AccessDenied")

    monkeypatch.setattr(type(store.fs), "pipe_file", denied)
    with pytest.raises(OSError) as raised:
        store.write_bytes("x.manifest.json", b"{}")
    assert str(raised.value) == (
        "Writing block:backups/x.manifest.json failed: Denied: AccessDenied"
    )
    assert repr(store) == "FsspecStore('block:backups')"
    url_store = FsspecStore("memory://operator:hunter2@bucket/reflexio")
    assert url_store.location("a") == "memory://bucket/reflexio/a"
    assert "hunter2" not in repr(url_store)


def test_locations_name_the_store_they_come_from(tmp_path: Path):
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    remote = open_store("memory://bucket/prefix/")
    assert isinstance(remote, FsspecStore) and remote.location("f") == "memory://bucket/prefix/f"

    local, name = split_location(tmp_path / "x.manifest.json")
    assert (local.location(name), name) == (str(tmp_path / "x.manifest.json"), "x.manifest.json")
    far, name = split_location("memory://bucket/prefix/x.manifest.json")
    assert (far.location(name), name) == ("memory://bucket/prefix/x.manifest.json", name)


def test_a_remote_manifest_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = FsspecStore(f"memory://atomic-{tmp_path.name}")
    store.write_bytes("m.manifest.json", json.dumps({"v": 1}).encode())
    mv = type(store.fs).mv

    def crash(fs: fsspec.AbstractFileSystem, *a: object, **kw: object) -> None:
        raise ConnectionError("reset")

    monkeypatch.setattr(type(store.fs), "mv", crash)
    with pytest.raises(OSError, match="ConnectionError: reset"):
        store.write_bytes("m.manifest.json", json.dumps({"v": 2}).encode())
    monkeypatch.setattr(type(store.fs), "mv", mv)
    assert json.loads(store.read_bytes("m.manifest.json")) == {"v": 1}
