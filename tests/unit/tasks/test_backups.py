"""Backup locations as parameters give them: checked before the run, the environment's
default, and Prefect filesystem blocks resolved to stores (with their settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from pydantic import ValidationError

from core.backup import BackupError, BackupWriter, open_backup
from core.backup_store import FsspecStore, LocalStore
from flows.params import RegenerationParams, RestoreParams
from tasks.backups import BackupLocationError, locate_file, open_location


def test_a_path_a_url_or_a_block_is_a_backup_dir(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("REFLEXIO_BACKUP_DIR", raising=False)
    assert RegenerationParams().backup_dir == "backups"
    assert RegenerationParams(backup_dir=Path("/srv/b")).backup_dir == "/srv/b"
    assert RegenerationParams(backup_dir=" s3://bucket/p ").backup_dir == "s3://bucket/p"
    assert RegenerationParams(backup_dir="block:reflexio-backups").backup_dir == (
        "block:reflexio-backups"
    )

    monkeypatch.setenv("REFLEXIO_BACKUP_DIR", "s3://bucket/nightly")
    assert RegenerationParams().backup_dir == "s3://bucket/nightly"
    assert RestoreParams(backup_file="b/x.manifest.json").records_dir == "s3://bucket/nightly"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("nosuchfs://bucket/p", "'nosuchfs://' is not a file system fsspec knows"),
        ("block:Reflexio Backups", "lowercase letters, digits and dashes"),
    ],
)
def test_a_bad_backup_dir_is_refused_before_the_run(value: str, message: str):
    with pytest.raises(ValidationError, match=message):
        RegenerationParams(backup_dir=value)


def test_a_backup_file_in_a_block_names_the_file():
    assert RestoreParams(backup_file="block:b/x.manifest.json").backup_file == (
        "block:b/x.manifest.json"
    )
    with pytest.raises(ValidationError, match=r"give the file in the block: 'block:b/<file"):
        RestoreParams(backup_file="block:b")


def test_paths_and_urls_need_no_prefect_api(tmp_path: Path):
    assert isinstance(open_location(tmp_path), LocalStore)
    store, name = locate_file("memory://bucket/p/x.manifest.json")
    assert isinstance(store, FsspecStore) and name == "x.manifest.json"


def test_blocks_resolve_to_their_stores(prefect_api, tmp_path: Path):
    url = f"memory://block-{tmp_path.name}/backups"
    RemoteFileSystem(basepath=url, settings={"skip_instance_cache": True}).save(
        "unit-remote-backups", overwrite=True
    )
    LocalFileSystem(basepath=str(tmp_path / "local")).save("unit-local-backups", overwrite=True)

    remote = open_location("block:unit-remote-backups")
    with BackupWriter(remote, "profiles", "http://h:1", "run-1") as writer:
        writer.write([{"profile_id": "p-1", "user_id": "u"}])
    assert writer.info.manifest_path.startswith("block:unit-remote-backups/profiles-h-1-")
    assert FsspecStore(url).exists(writer.info.manifest_name), "written under the basepath"
    store, name = locate_file(writer.info.manifest_path)
    assert open_backup(name, store).ids() == {"p-1"}

    local = open_location("block:unit-local-backups")
    assert isinstance(local, LocalStore) and local.directory == tmp_path / "local"

    with pytest.raises(BackupLocationError, match="No RemoteFileSystem or LocalFileSystem block"):
        open_location("block:no-such-block")
    assert issubclass(BackupLocationError, BackupError), "a refusal, not a crash"
