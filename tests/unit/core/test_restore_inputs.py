"""A restore's inputs: the backup, its run's touched ids, the erasures since; bad input is
refused with a message that says what was wrong and what to do."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.backup import BackupError, BackupWriter
from core.backup_store import FsspecStore
from core.erasures import ErasureRecordError, erasure_name, record_erasures
from core.restore_inputs import load_inputs
from core.restore_plan import RestoreInputError
from core.state import ExpectedState
from core.touched import touched_name, write_touched_ids

URL = "http://127.0.0.1:8081"
SERVER = "127.0.0.1:8081"
ROWS = [
    {"profile_id": "c-1", "user_id": "ann", "content": "x", "status": None},
    {"profile_id": "a-1", "user_id": "ben", "content": "y", "status": "archived"},
]


def backup(directory: Path | str, kind: str = "profiles", url: str = URL) -> str:
    rows = ROWS if kind == "profiles" else [{"user_playbook_id": 1, "user_id": "ann"}]
    with BackupWriter(directory, kind, url, "run-1234abcd") as writer:  # type: ignore[arg-type]
        writer.write(rows)
    return writer.info.manifest_path


def touched_path(manifest: str) -> Path:
    return Path(manifest).with_name(touched_name(Path(manifest).name))


def touched(manifest: str) -> str:
    state = ExpectedState(
        promoted=frozenset({"p-1"}),
        current=frozenset({"p-1"}),
        archived=frozenset({"c-1"}),
        deleted=frozenset({"a-1"}),
    )
    return write_touched_ids(manifest, state)


def test_the_touched_ids_beside_the_backup_and_the_users_erased_since(tmp_path: Path):
    manifest = backup(tmp_path)
    touched(manifest)
    created = load_inputs(manifest, URL, tmp_path, False, assume_no_erasures=True).backup.created_at
    log = record_erasures(tmp_path, SERVER, ["ann"], created - timedelta(days=1))
    record_erasures(tmp_path, SERVER, ["ben"], created + timedelta(seconds=1))

    inputs = load_inputs(manifest, URL, tmp_path, allow_other_server=False)

    assert inputs.run is not None and inputs.run.promoted == {"p-1"}
    assert inputs.touched_file == str(touched_path(manifest))
    assert inputs.erased == {"ben"}, "ann was erased before the backup: restored normally"
    assert inputs.records == (log,)


def test_every_input_from_a_remote_store(tmp_path: Path):
    store = FsspecStore(f"memory://restore-inputs-{tmp_path.name}")
    manifest = backup(store)
    touched(manifest)
    created = load_inputs(manifest, URL, store, False, assume_no_erasures=True).backup.created_at
    record_erasures(store, SERVER, ["ben"], created + timedelta(seconds=1))

    name = manifest.rsplit("/", 1)[1]
    inputs = load_inputs(name, URL, store, allow_other_server=False, store=store)

    assert inputs.backup.path == manifest.replace(".manifest.json", ".jsonl.gz")
    assert inputs.run is not None and inputs.run.deleted == {"a-1"}
    assert inputs.touched_file == manifest.replace(".manifest.json", ".touched.json.gz")
    assert inputs.erased == {"ben"}
    assert inputs.records == (f"{store.label}/{erasure_name(SERVER)}",)


def test_no_touched_file_and_no_records_only_when_both_risks_are_accepted(tmp_path: Path):
    inputs = load_inputs(
        backup(tmp_path),
        URL,
        tmp_path / "none",
        False,
        recreate_missing=True,
        assume_no_erasures=True,
    )
    assert inputs.run is None and inputs.touched_file is None and inputs.erased == frozenset()
    assert inputs.records_missing == (str(tmp_path / "none" / erasure_name(SERVER)),)


def test_a_backup_without_its_touched_file_is_refused(tmp_path: Path):
    manifest = backup(tmp_path)
    record_erasures(tmp_path, SERVER, ["ann"], datetime.now(UTC))
    with pytest.raises(
        RestoreInputError,
        match=r"^No touched-ids file beside .*\.touched\.json\.gz\).*users deleted, TTL "
        r"expired.*recreate_missing=true",
    ):
        load_inputs(manifest, URL, tmp_path, False)
    inputs = load_inputs(manifest, URL, tmp_path, False, recreate_missing=True)
    assert inputs.run is None and inputs.records_missing == ()


def test_no_erasure_record_is_refused(tmp_path: Path):
    manifest = backup(tmp_path)
    touched(manifest)
    with pytest.raises(
        RestoreInputError,
        match=r"^No erasure record .*erasures-127-0-0-1-8081\.jsonl: .*cannot prove.*"
        r"assume_no_erasures=true",
    ):
        load_inputs(manifest, URL, tmp_path, False)
    (tmp_path / erasure_name(SERVER)).write_text("")  # a record that names nobody
    assert load_inputs(manifest, URL, tmp_path, False).erased == frozenset()


def test_a_missing_backup_file(tmp_path: Path):
    with pytest.raises(BackupError, match="does not exist"):
        load_inputs(tmp_path / "nope.manifest.json", URL, tmp_path, False)


def test_a_playbook_backup(tmp_path: Path):
    with pytest.raises(RestoreInputError, match="holds user_playbooks, not profiles"):
        load_inputs(backup(tmp_path, "user_playbooks"), URL, tmp_path, False)


def test_a_backup_of_another_server_needs_allow_other_server(tmp_path: Path):
    manifest = backup(tmp_path, url="http://10.0.0.7:8081")
    with pytest.raises(
        RestoreInputError, match=r"backup of 10.0.0.7:8081, not of 127.0.0.1:8081.*allow_other"
    ):
        load_inputs(manifest, URL, tmp_path, False)

    accept = {"recreate_missing": True, "assume_no_erasures": True}
    created = load_inputs(manifest, URL, tmp_path, True, **accept).backup.created_at
    later = created + timedelta(hours=1)
    record_erasures(tmp_path, "10.0.0.7:8081", ["ann"], later)
    with pytest.raises(RestoreInputError, match=r"No erasure record .*127-0-0-1-8081"):
        load_inputs(manifest, URL, tmp_path, True, recreate_missing=True)
    record_erasures(tmp_path, SERVER, ["ben"], later)
    inputs = load_inputs(manifest, URL, tmp_path, allow_other_server=True, recreate_missing=True)
    assert inputs.erased == {"ann", "ben"}
    assert len(inputs.records) == 2, "the erasures of both addresses are read"


def test_an_unreadable_touched_file(tmp_path: Path):
    manifest = backup(tmp_path)
    touched_path(manifest).write_bytes(b"not gzip")
    with pytest.raises(RestoreInputError, match=r"Cannot read .*touched.*move it away"):
        load_inputs(manifest, URL, tmp_path, False)
    with gzip.open(touched_path(manifest), "wt") as out:
        out.write('{"promoted": "p-1"}')
    with pytest.raises(RestoreInputError, match="not a touched-ids file"):
        load_inputs(manifest, URL, tmp_path, False)


def test_an_unreadable_erasure_record(tmp_path: Path):
    manifest = backup(tmp_path)
    (tmp_path / erasure_name(SERVER)).write_text('{"user_id": "ann"}\n')
    with pytest.raises(ErasureRecordError, match="line 1, is not an erasure record"):
        load_inputs(manifest, URL, tmp_path, False, recreate_missing=True)
