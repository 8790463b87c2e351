"""Backup locations as parameters give them: checked before the run, the environment's
default, and Prefect filesystem blocks resolved to stores (with their settings)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from pydantic import ValidationError

from core.backup import BackupError, BackupWriter, open_backup
from core.backup_store import FsspecStore, LocalStore
from flows._common import apply_retention
from flows.params import RegenerationParams, RestoreParams
from tasks.backups import BackupLocationError, file_exists, folder_of, locate_file, open_location
from tasks.report import RunSummary

URL = "http://127.0.0.1:8081"


def test_a_path_a_url_or_a_block_is_a_backup_dir(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("REFLEXIO_BACKUP_DIR", raising=False)
    assert RegenerationParams().backup_dir == "backups"
    assert RegenerationParams(backup_dir=Path("/srv/b")).backup_dir == "/srv/b"
    assert RegenerationParams(backup_dir=" s3://bucket/p ").backup_dir == "s3://bucket/p"
    assert RegenerationParams(backup_dir="block:reflexio-backups").backup_dir == (
        "block:reflexio-backups"
    )
    assert RegenerationParams().backup_retention_days == 30

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


def test_negative_retention_is_refused():
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        RegenerationParams(backup_retention_days=-1)


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


def test_retention_after_a_run_deletes_old_backups_and_a_failure_is_only_noted(
    prefect_api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    stems = [
        f"profiles-127-0-0-1-8081-{day}T010000Z-{run}"
        for day, run in (("20200101", "aaaaaaaa"), ("20200102", "bbbbbbbb"))
    ]
    for stem in stems:
        for suffix in (".jsonl.gz", ".manifest.json", ".touched.json.gz"):
            (tmp_path / f"{stem}{suffix}").write_text("x")
    params = RegenerationParams(backup_dir=tmp_path)
    summary = RunSummary(title="t", server=URL)

    apply_retention(params, URL, "run-1", summary)

    assert summary.notes == [
        "Retention (30 days): deleted 1 backup(s) of 127.0.0.1:8081 (3 file(s)) from "
        f"{tmp_path}, keeping the newest of each kind."
    ]
    assert sorted(p.name for p in tmp_path.iterdir())[0].startswith(stems[1])
    assert len(list(tmp_path.iterdir())) == 3

    def broken(*args: object) -> None:
        raise OSError("Listing s3://b/p failed: EndpointConnectionError")

    monkeypatch.setattr("tasks.backups.prune", broken)
    apply_retention(params, URL, "run-1", summary)
    assert "old backups were not pruned (Listing s3://b/p failed" in summary.notes[-1]

    apply_retention(params.model_copy(update={"backup_retention_days": 0}), URL, "r", summary)
    assert len(summary.notes) == 2, "0 keeps every backup: nothing is listed"


def test_a_backup_file_is_found_where_it_was_written_local_or_remote(tmp_path):
    local = tmp_path / "profiles-x.manifest.json"
    assert not file_exists(str(local))
    local.write_text("{}")
    assert file_exists(str(local))
    assert folder_of(str(local)) == str(tmp_path)

    remote = "memory://reflexio-test-backups/prefix/profiles-x.manifest.json"
    assert not file_exists(remote)
    fsspec.filesystem("memory").pipe(remote, b"{}")
    assert file_exists(remote)
    assert folder_of(remote) == "memory://reflexio-test-backups/prefix"
    assert folder_of("block:team-backups/profiles-x.manifest.json") == "block:team-backups"
