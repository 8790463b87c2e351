"""Streamed backups of server rows (format reflexio-pipelines-backup/2), and reading them.

A v2 backup is two files sharing one stem, `<kind>-<host-port>-<UTC time>-<run id prefix>`:

- `<stem>.jsonl.gz`: one JSON row per line, gzip. Rows go from each listing page straight
  into it, so memory stays bounded whatever the number of rows. While it is being written
  it is named `<stem>.jsonl.gz.partial`.
- `<stem>.manifest.json`: what, from where, when, the counts per status, the total and the
  sha256 of the data file. It is written last and atomically: a backup without a manifest
  is unfinished and is never read as a finished one.

The manifest does not list the row ids: at 1M rows that is tens of MB of JSON to build in
memory and a second copy of what the data file holds. The checksum and the counts bind the
manifest to its data, and `Backup.ids()` streams the ids from the data when they are needed.

A v1 backup (`reflexio-pipelines-backup/1`) is one JSON document holding its rows; it is
still read (whole: that is how it was written).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, NoReturn, cast

from core.identity import server_key, server_slug

FORMAT = "reflexio-pipelines-backup/2"
V1_FORMAT = "reflexio-pipelines-backup/1"
DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"
COMPRESS_LEVEL = 6
"""zlib's default: about 3x faster than level 9 for a file a few percent larger."""

BackupKind = Literal["profiles", "user_playbooks"]
ID_FIELDS: dict[str, str] = {"profiles": "profile_id", "user_playbooks": "user_playbook_id"}

_ENCODER = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False)
_USE_ANOTHER = "Do not restore from it: use another backup or a good copy of this one."


class BackupError(ValueError):
    """A backup cannot be written or read as it is; the message says what to do."""


def _status_of(row: Mapping[str, Any]) -> str:
    """The status a row is counted under: CURRENT rows have status null on the server."""
    return str(row.get("status") or "current")


def _id_field_of(kind: str) -> str:
    """The id field of a kind's rows; BackupError for a kind that is not backed up."""
    try:
        return ID_FIELDS[kind]
    except KeyError:
        raise BackupError(
            f"Unknown backup kind {kind!r}: expected one of {sorted(ID_FIELDS)}."
        ) from None


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, text: str) -> None:
    """Temp file, fsync, rename, fsync the directory: the file is whole or absent."""
    tmp = _sibling(path, ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# --- writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    """A finished backup: its two files, the rows per status, and the data file's sha256."""

    data_path: Path
    manifest_path: Path
    counts: dict[str, int]
    total: int
    sha256: str


class _HashingWriter:
    """The gzip layer's target: writes to a file and hashes what it writes."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class BackupWriter:
    """Streams pages of rows into a v2 backup. Use it as a context manager.

    On a clean exit the data is fsynced and the manifest written; `info` then describes the
    backup. On an exception nothing is left behind: no manifest, no data file.
    """

    def __init__(
        self,
        backup_dir: Path,
        kind: BackupKind,
        server_url: str,
        run_id: str,
        agent_version: str | None = None,
        part: str = "",
    ) -> None:
        self._id_field = _id_field_of(kind)
        created = datetime.now(UTC)
        self._header: dict[str, Any] = {
            "format": FORMAT,
            "kind": kind,
            "server": server_key(server_url),
            "agent_version": agent_version,
            "created_at": created.isoformat(),
            "flow_run_id": run_id,
            "id_field": self._id_field,
        }
        stem = f"{kind}-{server_slug(server_url)}-{created:%Y%m%dT%H%M%SZ}-{run_id[:8]}"
        if part:  # a second file of the same run, e.g. its live rows
            stem += f"-{part}"
        self.data_path = Path(backup_dir) / (stem + DATA_SUFFIX)
        self.manifest_path = Path(backup_dir) / (stem + MANIFEST_SUFFIX)
        self._partial = _sibling(self.data_path, PARTIAL_SUFFIX)
        self._counts: Counter[str] = Counter()
        self._info: BackupInfo | None = None
        self._open()

    def _open(self) -> None:
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        if self.data_path.exists() or self.manifest_path.exists():
            raise BackupError(
                f"{self.data_path} already exists (a backup of the same kind, server and "
                "run in the same second); it is not overwritten. Run again."
            )
        self._raw = self._partial.open("xb")
        self._hashing = _HashingWriter(self._raw)
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._hashing, compresslevel=COMPRESS_LEVEL
        )

    @property
    def info(self) -> BackupInfo:
        """The finished backup (RuntimeError before a clean exit of the `with` block)."""
        if self._info is None:
            raise RuntimeError(f"backup {self.data_path} is not finished")
        return self._info

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append one page of rows; each must carry the kind's id field."""
        lines = []
        for row in rows:
            if self._id_field not in row:
                raise BackupError(
                    f"A row has no {self._id_field!r} (fields: {sorted(row)}); a "
                    f"{self._header['kind']} backup needs it to restore by id."
                )
            self._counts[_status_of(row)] += 1
            lines.append(_ENCODER.encode(row if isinstance(row, dict) else dict(row)))
        if lines:
            self._gzip.write(("\n".join(lines) + "\n").encode("utf-8"))

    def __enter__(self) -> BackupWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise

    def _finish(self) -> None:
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._partial, self.data_path)
        _fsync_dir(self.data_path.parent)
        counts = dict(sorted(self._counts.items()))
        total = sum(counts.values())
        sha256 = self._hashing.digest.hexdigest()
        manifest = {**self._header, "counts": counts, "total": total, "sha256": sha256}
        _write_atomically(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
        self._info = BackupInfo(self.data_path, self.manifest_path, counts, total, sha256)

    def _discard(self) -> None:
        """Close and remove every file of this backup, the manifest first."""
        with contextlib.suppress(OSError):
            self._gzip.close()
        self._raw.close()
        for path in (self.manifest_path, _sibling(self.manifest_path, ".tmp")):
            path.unlink(missing_ok=True)
        self.data_path.unlink(missing_ok=True)
        self._partial.unlink(missing_ok=True)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    """A backup on disk: its manifest's fields and a streaming reader of its rows.

    `path` is the file holding the rows (the v2 data file, or the v1 document);
    `manifest_path` and `sha256` are None for v1.
    """

    path: Path
    manifest_path: Path | None
    format: str
    kind: BackupKind
    server: str
    agent_version: str | None
    created_at: datetime
    flow_run_id: str | None
    counts: dict[str, int]
    total: int
    id_field: str
    sha256: str | None

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Stream the rows. At the end of the stream, BackupError if the data's checksum,
        row count or counts per status differ from the manifest: consume the whole stream
        before acting on what it yielded."""
        rows = _v1_rows(self.path) if self.sha256 is None else _v2_rows(self.path, self.sha256)
        counted: Counter[str] = Counter()
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or self.id_field not in row:
                raise BackupError(
                    f"{self.path}: row {number} is not a {self.kind} row (no "
                    f"{self.id_field!r}). {_USE_ANOTHER}"
                )
            counted[_status_of(row)] += 1
            yield row
        if counted != Counter(self.counts):
            raise BackupError(
                f"{self.path} holds {counted.total()} row(s) {dict(sorted(counted.items()))}, "
                f"its manifest says {self.total} {self.counts}: the manifest or the data was "
                f"changed after the backup was written. {_USE_ANOTHER}"
            )

    def ids(self) -> set[Any]:
        """The ids of every row (a full, checked pass over the data)."""
        return {row[self.id_field] for row in self.iter_rows()}


class _HashingReader:
    """The gzip layer's source: reads a file and hashes what it reads."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> str:
        """Hash whatever the gzip layer left unread; the sha256 of the whole file."""
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


def _v2_rows(path: Path, sha256: str) -> Iterator[Any]:
    with path.open("rb") as raw:
        source = _HashingReader(raw)
        try:
            with gzip.GzipFile(filename="", mode="rb", fileobj=source) as data:
                yield from _json_lines(path, data)
        except EOFError:
            raise BackupError(_truncated(path)) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise BackupError(f"{path} is damaged ({exc}). {_USE_ANOTHER}") from None
        except OSError as exc:
            raise BackupError(f"Cannot read {path}: {exc}.") from None
        actual = source.drain()
    if actual != sha256:
        raise BackupError(
            f"Checksum mismatch: {path} has sha256 {actual}, its manifest says {sha256}; the "
            f"file was changed after the backup was written. {_USE_ANOTHER}"
        )


def _json_lines(path: Path, lines: Iterable[bytes]) -> Iterator[Any]:
    for number, line in enumerate(lines, start=1):
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise BackupError(
                f"{path}: line {number} is not JSON ({exc}). {_USE_ANOTHER}"
            ) from None


def _truncated(path: Path) -> str:
    return (
        f"{path} is truncated: its data ends before the end of the backup (cut off while "
        f"being written or copied). {_USE_ANOTHER}"
    )


def _v1_rows(path: Path) -> Iterator[Any]:
    yield from _v1_checked(path, _load_json(path))["rows"]


def _v1_checked(path: Path, document: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(document.get("rows"), list):
        raise BackupError(f"{path} is a {V1_FORMAT} backup without its 'rows' list. {_USE_ANOTHER}")
    return document


def _load_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise BackupError(f"Cannot read {path}: {exc}.") from None
    except ValueError:
        raise BackupError(_not_a_backup(path, "it is not JSON")) from None
    if not isinstance(document, dict):
        raise BackupError(_not_a_backup(path, "it is not a JSON object"))
    return document


def _not_a_backup(path: Path, why: str) -> str:
    return (
        f"{path} is not a backup ({why}). Give the backup's {MANIFEST_SUFFIX} or "
        f"{DATA_SUFFIX} file, or an old {V1_FORMAT} .json file."
    )


def open_backup(path: Path) -> Backup:
    """Open a backup from its manifest, its data file, or an old v1 .json document.

    Reads the manifest (for v1 the whole document) and checks that the data file exists;
    the rows are checked as `Backup.iter_rows()` streams them. Raises BackupError.
    """
    path = Path(path)
    if path.name.endswith(DATA_SUFFIX + PARTIAL_SUFFIX):
        raise BackupError(
            f"{path} is an unfinished backup: the run writing it stopped before the end. "
            "It holds only part of the rows; use another backup."
        )
    if not path.is_file():
        raise BackupError(f"Backup file {path} does not exist.")
    if path.name.endswith(DATA_SUFFIX):
        return _open_v2(_manifest_of(path))
    if path.suffix != ".json":
        raise BackupError(_not_a_backup(path, "unexpected file name"))
    document = _load_json(path)
    found = document.get("format")
    if found == FORMAT:
        return _open_v2(path, document)
    if found == V1_FORMAT:
        return _open_v1(path, _v1_checked(path, document))
    if isinstance(found, str) and found.startswith("reflexio-pipelines-backup/"):
        raise BackupError(
            f"{path} is a {found} backup; this version reads {FORMAT} and {V1_FORMAT}. "
            "Restore it with the version of the pipelines that wrote it."
        )
    raise BackupError(_not_a_backup(path, f"format {found!r}"))


def _manifest_of(data_path: Path) -> Path:
    manifest = data_path.with_name(data_path.name[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX)
    if not manifest.is_file():
        raise BackupError(
            f"Missing manifest: {manifest} does not exist, so {data_path} cannot be checked. "
            "Either the run that wrote it stopped before finishing (the backup is incomplete) "
            "or the manifest was not copied with it: copy it next to the data file."
        )
    return manifest


def _open_v2(manifest: Path, document: dict[str, Any] | None = None) -> Backup:
    document = _load_json(manifest) if document is None else document
    if not manifest.name.endswith(MANIFEST_SUFFIX):
        raise BackupError(
            f"{manifest} is a backup manifest but is not named <stem>{MANIFEST_SUFFIX}, so its "
            f"data file <stem>{DATA_SUFFIX} cannot be found: rename it back."
        )
    data = manifest.with_name(manifest.name[: -len(MANIFEST_SUFFIX)] + DATA_SUFFIX)
    if not data.is_file():
        raise BackupError(
            f"Missing data file: {data}, which holds the rows of {manifest}, does not exist. "
            "Copy it next to the manifest."
        )
    sha256 = _field(manifest, document, "sha256", str)
    total = _field(manifest, document, "total", int)
    backup = _backup(data, manifest, document, total, sha256)
    if document.get("id_field") != backup.id_field:
        _malformed(manifest, "id_field", f"{backup.kind} rows are keyed by {backup.id_field!r}")
    if total != sum(backup.counts.values()):
        _malformed(manifest, "total", f"{total} is not the sum of counts {backup.counts}")
    return backup


def _open_v1(path: Path, document: dict[str, Any]) -> Backup:
    return _backup(path, None, document, len(document["rows"]), None)


def _backup(
    path: Path,
    manifest: Path | None,
    document: dict[str, Any],
    total: int,
    sha256: str | None,
) -> Backup:
    source = manifest or path
    kind = _field(source, document, "kind", str)
    if kind not in ID_FIELDS:
        raise BackupError(
            f"{source} holds {kind!r} rows, a kind this version does not know (it knows "
            f"{sorted(ID_FIELDS)}). Restore it with the version of the pipelines that wrote it."
        )
    counts = _field(source, document, "counts", dict)
    if not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in counts.items()):
        _malformed(source, "counts", "expected status names mapped to row counts")
    try:
        created_at = datetime.fromisoformat(_field(source, document, "created_at", str))
    except ValueError:
        _malformed(source, "created_at", "expected an ISO 8601 time")
    return Backup(
        path=path,
        manifest_path=manifest,
        format=document["format"],
        kind=cast(BackupKind, kind),
        server=_field(source, document, "server", str),
        agent_version=_field(source, document, "agent_version", (str, type(None))),
        created_at=created_at,
        flow_run_id=_field(source, document, "flow_run_id", (str, type(None))),
        counts=counts,
        total=total,
        id_field=ID_FIELDS[kind],
        sha256=sha256,
    )


def _field(path: Path, document: dict[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(document.get(name), types):
        _malformed(path, name, f"missing or of the wrong type ({document.get(name)!r})")
    return document.get(name)


def _malformed(path: Path, name: str, why: str) -> NoReturn:
    raise BackupError(
        f"{path} has a bad {name!r} field: {why}. The file was edited or damaged. {_USE_ANOTHER}"
    )
