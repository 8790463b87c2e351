"""Streamed backups: round trip, bounded memory, unfinished backups, every corruption, v1."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest

from core.backup import FORMAT, V1_FORMAT, Backup, BackupError, BackupWriter, open_backup
from core.backup_store import LocalStore

URL = "http://127.0.0.1:8081"
RUN_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
STATUSES = (None, "archived", "pending")


def profile(i: int) -> dict[str, Any]:
    return {
        "profile_id": f"p-{i:07d}",
        "user_id": f"user-{i % 97}",
        "content": f"likes item {i} — and ünïcode",
        "last_modified_timestamp": 1_700_000_000 + i,
        "status": STATUSES[i % 3],
        "source": "chat",
    }


def pages(total: int, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, total, size):
        yield [profile(i) for i in range(start, min(total, start + size))]


def write(directory: Path, total: int, kind: str = "profiles", **kw: Any) -> BackupWriter:
    with BackupWriter(directory, kind, URL, RUN_ID, **kw) as writer:
        for page in pages(total):
            writer.write(page)
    return writer


def read_all(path: Path) -> list[dict[str, Any]]:
    return list(open_backup(path).iter_rows())


@pytest.fixture
def small(tmp_path: Path) -> BackupWriter:
    return write(tmp_path, 3000)


def test_round_trip_of_50000_rows_in_pages(tmp_path: Path) -> None:
    info = write(tmp_path, 50_000, agent_version="v7").info

    stem = r"profiles-127-0-0-1-8081-\d{8}T\d{6}Z-0f1e2d3c"
    assert re.fullmatch(stem + r"\.jsonl\.gz", info.data_name)
    assert info.manifest_name == info.data_name.replace(".jsonl.gz", ".manifest.json")
    assert info.data_path == str(tmp_path / info.data_name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [info.data_name, info.manifest_name]
    )
    assert info.counts == {"archived": 16_667, "current": 16_667, "pending": 16_666}
    assert info.total == 50_000
    assert info.sha256 == hashlib.sha256(Path(info.data_path).read_bytes()).hexdigest()

    manifest = json.loads(Path(info.manifest_path).read_text())
    assert manifest == {
        "format": FORMAT,
        "kind": "profiles",
        "server": "127.0.0.1:8081",
        "agent_version": "v7",
        "created_at": manifest["created_at"],
        "flow_run_id": RUN_ID,
        "counts": info.counts,
        "total": 50_000,
        "sha256": info.sha256,
        "id_field": "profile_id",
    }

    for path in (info.manifest_path, info.data_path):
        backup = open_backup(path)
        assert (backup.kind, backup.server, backup.agent_version) == (
            "profiles",
            "127.0.0.1:8081",
            "v7",
        )
        assert (backup.counts, backup.total, backup.flow_run_id) == (info.counts, 50_000, RUN_ID)
        assert backup.created_at.isoformat() == manifest["created_at"]
        rows = list(backup.iter_rows())
        assert rows == [profile(i) for i in range(50_000)]
        assert backup.ids() == {f"p-{i:07d}" for i in range(50_000)}


def test_rows_are_lines_of_json_in_gzip(small: BackupWriter) -> None:
    with gzip.open(Path(small.info.data_path), "rt", encoding="utf-8") as data:
        lines = data.read().splitlines()
    assert [json.loads(line) for line in lines] == [profile(i) for i in range(3000)]


def test_writing_holds_one_page_at_a_time(tmp_path: Path) -> None:
    filler = "x" * 250
    tracemalloc.start()
    try:
        with BackupWriter(tmp_path, "profiles", URL, RUN_ID) as writer:
            for start in range(0, 100_000, 1000):
                # fresh strings in every row: a writer keeping rows or lines would grow
                writer.write(
                    {"profile_id": f"p-{i}", "content": f"{i} {filler}"}
                    for i in range(start, start + 1000)
                )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with gzip.open(writer.info.data_path) as data:
        size = sum(len(line) for line in data)
    assert writer.info.total == 100_000
    assert size > 25_000_000
    assert peak < size / 20, f"peak {peak} bytes while writing {size} bytes of rows"


def test_an_exception_inside_the_writer_leaves_nothing(tmp_path: Path) -> None:
    writer = BackupWriter(tmp_path, "profiles", URL, RUN_ID)
    with pytest.raises(RuntimeError, match="listing failed"), writer:
        writer.write(next(pages(1000)))
        assert any(tmp_path.iterdir())
        raise RuntimeError("listing failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="not finished"):
        writer.info  # noqa: B018


def test_a_failure_to_write_the_manifest_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(store: LocalStore, name: str, data: bytes) -> None:
        (store.directory / f"{name}.tmp").write_bytes(data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalStore, "write_bytes", disk_full)
    with pytest.raises(BackupError, match=r"No space left.*stopped before its next write"):
        write(tmp_path, 10)
    assert list(tmp_path.iterdir()) == []


def test_the_data_file_is_marked_partial_until_finished(tmp_path: Path) -> None:
    with BackupWriter(tmp_path, "profiles", URL, RUN_ID) as writer:
        writer.write(next(pages(10)))
        (partial,) = tmp_path.iterdir()
        assert partial.name == writer.data_name + ".partial"
        with pytest.raises(BackupError, match="unfinished backup"):
            open_backup(partial)
    assert not partial.exists()


def test_a_row_without_its_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="'user_playbook_id'"):
        write(tmp_path, 10, kind="user_playbooks")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="Unknown backup kind 'agent_playbooks'"):
        BackupWriter(tmp_path, "agent_playbooks", URL, RUN_ID)  # type: ignore[arg-type]


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:
        return datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_second_backup_with_the_same_name_does_not_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.backup.datetime", _FrozenClock)
    first = write(tmp_path, 10).info
    with pytest.raises(BackupError, match="already exists"):
        BackupWriter(tmp_path, "profiles", URL, RUN_ID)
    assert read_all(first.manifest_path) == [profile(i) for i in range(10)]


# --- corruption ---------------------------------------------------------------------------


def test_a_truncated_data_file(small: BackupWriter) -> None:
    data = Path(small.info.data_path)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    backup = open_backup(Path(small.info.manifest_path))
    with pytest.raises(BackupError, match="is truncated"):
        list(backup.iter_rows())


def test_one_flipped_byte_in_the_compressed_rows(small: BackupWriter) -> None:
    _flip(Path(small.info.data_path), Path(small.info.data_path).stat().st_size // 2)
    with pytest.raises(BackupError, match="Do not restore from it"):
        read_all(Path(small.info.manifest_path))


def test_one_flipped_byte_that_gzip_cannot_see(small: BackupWriter) -> None:
    _flip(Path(small.info.data_path), 5)  # in the gzip header's mtime: the rows still decompress
    with pytest.raises(BackupError, match="Checksum mismatch"):
        read_all(Path(small.info.manifest_path))


def test_counts_in_the_manifest_that_the_data_does_not_have(small: BackupWriter) -> None:
    manifest = Path(small.info.manifest_path)
    document = json.loads(manifest.read_text())
    document["counts"]["archived"] += 1
    document["total"] += 1
    manifest.write_text(json.dumps(document))
    seen = []
    with pytest.raises(BackupError, match="its manifest says 3001"):
        seen.extend(open_backup(manifest).iter_rows())
    assert len(seen) == 3000, "the error comes at the end of the stream"


def test_a_manifest_whose_total_is_not_its_counts(small: BackupWriter) -> None:
    _edit_manifest(small, total=2999)
    with pytest.raises(BackupError, match="bad 'total' field"):
        open_backup(Path(small.info.manifest_path))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "agent_playbooks", "'agent_playbooks' rows, a kind this version does not know"),
        ("format", "reflexio-pipelines-backup/4", "this version reads"),
        ("format", "something-else", "is not a backup"),
        ("id_field", "user_id", "bad 'id_field' field"),
        ("sha256", None, "bad 'sha256' field"),
        ("counts", {"current": -1}, "bad 'counts' field"),
        ("created_at", "yesterday", "bad 'created_at' field"),
    ],
)
def test_a_bad_manifest_field(small: BackupWriter, field: str, value: Any, message: str) -> None:
    _edit_manifest(small, **{field: value})
    with pytest.raises(BackupError, match=message):
        open_backup(Path(small.info.manifest_path))


def test_a_missing_data_file(small: BackupWriter) -> None:
    Path(small.info.data_path).unlink()
    with pytest.raises(BackupError, match="Missing data file"):
        open_backup(Path(small.info.manifest_path))


def test_a_data_file_without_its_manifest(small: BackupWriter) -> None:
    Path(small.info.manifest_path).unlink()
    with pytest.raises(BackupError, match="Missing manifest"):
        open_backup(Path(small.info.data_path))


def test_a_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="does not exist"):
        open_backup(tmp_path / "nothing.manifest.json")


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("notes.json", b'{"hello": "world"}', "format None"),
        ("list.json", b"[1, 2]", "it is not a JSON object"),
        ("text.json", b"hello", "it is not JSON"),
        ("photo.png", b"\x89PNG", "unexpected file name"),
    ],
)
def test_a_file_that_is_not_a_backup(tmp_path: Path, name: str, content: bytes, why: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(BackupError, match=f"is not a backup \\({why}"):
        open_backup(tmp_path / name)


def test_a_data_file_that_is_not_gzip(small: BackupWriter) -> None:
    Path(small.info.data_path).write_bytes(b'{"profile_id": "p"}\n')
    with pytest.raises(BackupError, match="is damaged"):
        read_all(Path(small.info.manifest_path))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(writer: BackupWriter, **changes: Any) -> None:
    path = Path(writer.info.manifest_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


# --- v1 ------------------------------------------------------------------------------------


def v1_document(rows: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    """A v1 backup as the old `backup_document` wrote it."""
    return {
        "format": V1_FORMAT,
        "kind": "profiles",
        "server": "127.0.0.1:8081",
        "agent_version": None,
        "created_at": "2025-01-02T03:04:05+00:00",
        "flow_run_id": RUN_ID,
        "counts": {"archived": 1, "current": 2},
        "rows": rows,
        **changes,
    }


@pytest.fixture
def v1_rows() -> list[dict[str, Any]]:
    return [profile(0), profile(1), profile(3)]


def test_a_v1_file_still_reads(tmp_path: Path, v1_rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "profiles-127-0-0-1-8081-20250102T030405Z-0f1e2d3c.json"
    path.write_text(json.dumps(v1_document(v1_rows), indent=2))
    backup = open_backup(path)
    assert backup.path == str(path) and backup.manifest_path is None
    assert backup == Backup(
        store=LocalStore(tmp_path),
        name=path.name,
        manifest_name=None,
        format=V1_FORMAT,
        kind="profiles",
        server="127.0.0.1:8081",
        agent_version=None,
        created_at=backup.created_at,
        flow_run_id=RUN_ID,
        counts={"archived": 1, "current": 2},
        total=3,
        id_field="profile_id",
        sha256=None,
    )
    assert backup.created_at.isoformat() == "2025-01-02T03:04:05+00:00"
    assert list(backup.iter_rows()) == v1_rows
    assert backup.ids() == {"p-0000000", "p-0000001", "p-0000003"}


def test_a_v1_file_whose_counts_are_wrong(tmp_path: Path, v1_rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1_document(v1_rows, counts={"current": 3})))
    with pytest.raises(BackupError, match="its manifest says 3"):
        read_all(path)


def test_a_v1_file_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**v1_document([]), "rows": None}))
    with pytest.raises(BackupError, match="without its 'rows' list"):
        open_backup(path)


def test_a_v1_row_without_its_id(tmp_path: Path, v1_rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "old.json"
    del v1_rows[1]["profile_id"]
    path.write_text(json.dumps(v1_document(v1_rows)))
    with pytest.raises(BackupError, match="row 2 is not a profiles row"):
        read_all(path)


# --- v3: later versions of a row (a pass's delta) --------------------------------------------


def with_versions(directory: Path) -> BackupWriter:
    """300 rows, then later versions of three of them: one moved to ARCHIVED, one
    restamped in CURRENT, one moved twice."""
    with BackupWriter(directory, "profiles", URL, RUN_ID) as writer:
        writer.write([profile(i) for i in range(300)])
        moved = {**profile(0), "status": "archived", "last_modified_timestamp": 1_800_000_000}
        again = {**profile(3), "content": "restamped", "last_modified_timestamp": 1_800_000_001}
        twice = {**profile(6), "status": "pending"}
        writer.write(
            [moved, again, twice],
            replaces={"p-0000000": "current", "p-0000003": "current", "p-0000006": "current"},
        )
        writer.write([{**twice, "status": None}], replaces={"p-0000006": "pending"})
    return writer


def test_a_backup_with_later_versions_reads_each_id_once_in_its_last_version(tmp_path: Path):
    writer = with_versions(tmp_path)
    backup = open_backup(writer.info.manifest_path)
    assert backup.format == "reflexio-pipelines-backup/3"
    assert backup.versions == {"p-0000000": 2, "p-0000003": 2, "p-0000006": 3}
    rows = list(backup.iter_rows())
    assert len(rows) == backup.total == 300
    by_id = {r["profile_id"]: r for r in rows}
    assert by_id["p-0000000"]["status"] == "archived"
    assert by_id["p-0000003"]["content"] == "restamped"
    assert by_id["p-0000006"]["status"] is None
    assert backup.counts == {"archived": 101, "current": 99, "pending": 100}
    manifest = json.loads(Path(writer.info.manifest_path).read_text())
    assert manifest["lines"] == 304


def test_a_backup_without_later_versions_stays_v2(small: BackupWriter) -> None:
    manifest = json.loads(Path(small.info.manifest_path).read_text())
    assert manifest["format"] == FORMAT and "versions" not in manifest


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"versions": {"p-0000000": 3, "p-0000003": 2, "p-0000006": 3}, "lines": 305},
            "another number of versions",
        ),
        ({"versions": {"p-0000000": 1}}, "bad 'versions'"),
        ({"lines": 303}, "bad 'lines'"),
    ],
)
def test_a_v3_manifest_that_does_not_fit_its_data_is_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    writer = with_versions(tmp_path)
    _edit_manifest(writer, **changes)
    with pytest.raises(BackupError, match=message):
        list(open_backup(writer.info.manifest_path).iter_rows())
