"""Streamed backups of server rows (formats reflexio-pipelines-backup/2 and /3), and reading
them.

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

Both live in a `BackupStore` (core/backup_store.py): a local directory, where the data is
written in place, or a remote folder (`s3://...`), where it is written to a local staging
file first, then uploaded and its size checked, and the manifest uploaded last. A backup is
finished, locally or remotely, only once its manifest is there.

**Later versions of a row (v3).** A pass over a live server lists a snapshot, then the rows
that changed since the pass began (core/delta.py); a changed row is written again, after its
earlier line. A backup where that happened is `reflexio-pipelines-backup/3`: its manifest's
`versions` maps each such id to its number of lines, and the data's last line of an id is
its version. `Backup.iter_rows()` yields every id once, its last version (at the position
of that last line); `counts` and `total` count those rows, `lines` the lines. A backup with
no repeated id is written as v2, exactly as before. A reader that knows only v2 refuses a
v3 backup by name rather than restore an earlier version of a row.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Literal, NoReturn, cast

from core.backup_store import TMP_SUFFIX, BackupStore, as_store, split_location
from core.identity import server_key, server_slug

FORMAT = "reflexio-pipelines-backup/2"
V3_FORMAT = "reflexio-pipelines-backup/3"
"""A v2 backup whose data holds later versions of some rows (see the module docstring)."""
V1_FORMAT = "reflexio-pipelines-backup/1"
DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"
LIVE_PART = "live"
"""The `part` of a run's second backup: the live rows saved right before its upgrade."""
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


# --- writing ------------------------------------------------------------------------------


class _Located:
    """A backup's two files in its store, as paths or URLs."""

    store: BackupStore
    data_name: str
    manifest_name: str

    @property
    def data_path(self) -> str:
        """Where the data file is (a path or a URL)."""
        return self.store.location(self.data_name)

    @property
    def manifest_path(self) -> str:
        """Where the manifest is (a path or a URL): what a restore is given."""
        return self.store.location(self.manifest_name)


@dataclass(frozen=True)
class BackupInfo(_Located):
    """A finished backup: its store and two files, the rows per status, and the data
    file's sha256."""

    store: BackupStore = field(compare=False)
    data_name: str
    manifest_name: str
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


class BackupWriter(_Located):
    """Streams pages of rows into a v2 backup. Use it as a context manager.

    On a clean exit the data is fsynced (and uploaded to a remote store) and the manifest
    written; `info` then describes the backup. On an exception nothing is left behind: no
    manifest, no data file. Storage errors become BackupErrors naming the location.
    """

    def __init__(
        self,
        store: BackupStore | Path | str,
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
        self.store = as_store(store)
        self.data_name = stem + DATA_SUFFIX
        self.manifest_name = stem + MANIFEST_SUFFIX
        self._counts: Counter[str] = Counter()
        self._versions: dict[str, int] = {}
        """Lines per id, for the ids written more than once."""
        self._lines = 0
        self._info: BackupInfo | None = None
        try:
            self._open()
        except OSError as exc:
            raise self._cannot_write(exc) from None

    def _cannot_write(self, exc: OSError) -> BackupError:
        return BackupError(
            f"Cannot write the backup {self.manifest_path}: {exc}. The run stopped before "
            "its next write to the server. Check that backup_dir is writable from this "
            "worker (and its credentials), then run again."
        )

    def _open(self) -> None:
        if self.store.exists(self.data_name) or self.store.exists(self.manifest_name):
            raise BackupError(
                f"{self.data_path} already exists (a backup of the same kind, server and "
                "run in the same second); it is not overwritten. Run again."
            )
        self._partial = self.store.staging_dir() / (self.data_name + PARTIAL_SUFFIX)
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

    def write(
        self, rows: Iterable[Mapping[str, Any]], replaces: Mapping[str, str] | None = None
    ) -> None:
        """Append one page of rows; each must carry the kind's id field.

        `replaces` names the rows that are later versions of rows already written: their id
        (as text) -> the status the earlier version was written with. The reader then
        yields only the last version of such an id (format v3)."""
        lines = []
        for row in rows:
            if self._id_field not in row:
                raise BackupError(
                    f"A row has no {self._id_field!r} (fields: {sorted(row)}); a "
                    f"{self._header['kind']} backup needs it to restore by id."
                )
            if replaces:
                key = str(row[self._id_field])
                earlier = replaces.get(key)
                if earlier is not None:
                    self._counts[earlier] -= 1
                    self._versions[key] = self._versions.get(key, 1) + 1
            self._counts[_status_of(row)] += 1
            lines.append(_ENCODER.encode(row if isinstance(row, dict) else dict(row)))
        if lines:
            self._lines += len(lines)
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
        except OSError as exc:
            self._discard()
            raise self._cannot_write(exc) from None
        except BaseException:
            self._discard()
            raise

    def _finish(self) -> None:
        """Close and fsync the data, move it into the store (a rename, or an upload whose
        size is checked), then write the manifest: last, whole or absent."""
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self.store.move_in(self._partial, self.data_name)
        counts = {status: n for status, n in sorted(self._counts.items()) if n}
        total = sum(counts.values())
        sha256 = self._hashing.digest.hexdigest()
        manifest = {**self._header, "counts": counts, "total": total, "sha256": sha256}
        if self._versions:
            versions = dict(sorted(self._versions.items()))
            manifest.update(format=V3_FORMAT, versions=versions, lines=self._lines)
        text = json.dumps(manifest, indent=2, sort_keys=True)
        self.store.write_bytes(self.manifest_name, text.encode("utf-8"))
        self._info = BackupInfo(
            self.store, self.data_name, self.manifest_name, counts, total, sha256
        )

    def _discard(self) -> None:
        """Close and remove every file of this backup, the manifest first (best effort:
        without its manifest, what is left is never read as a finished backup)."""
        with contextlib.suppress(OSError):
            self._gzip.close()
        self._raw.close()
        self._partial.unlink(missing_ok=True)
        for name in (self.manifest_name, self.manifest_name + TMP_SUFFIX, self.data_name):
            with contextlib.suppress(OSError):
                self.store.delete(name)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    """A backup in a store: its manifest's fields and a streaming reader of its rows.

    `name` is the file holding the rows (the v2 data file, or the v1 document);
    `manifest_name` and `sha256` are None for v1.
    """

    store: BackupStore = field(compare=False, repr=False)
    name: str
    manifest_name: str | None
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
    versions: dict[str, int] = field(default_factory=dict, repr=False)
    """v3: id (as text) -> its number of lines, for the ids written more than once."""

    @property
    def path(self) -> str:
        """Where the rows are (a path or a URL)."""
        return self.store.location(self.name)

    @property
    def manifest_path(self) -> str | None:
        """Where the manifest is (None for v1)."""
        return None if self.manifest_name is None else self.store.location(self.manifest_name)

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Stream the rows: every id once, in its last version (v3: see the module
        docstring). At the end of the stream, BackupError if the data's checksum, row count
        or counts per status differ from the manifest: consume the whole stream before
        acting on what it yielded."""
        rows = (
            _v1_rows(self.store, self.name)
            if self.sha256 is None
            else _v2_rows(self.store, self.name, self.sha256)
        )
        counted: Counter[str] = Counter()
        lines: Counter[str] = Counter()
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or self.id_field not in row:
                raise BackupError(
                    f"{self.path}: row {number} is not a {self.kind} row (no "
                    f"{self.id_field!r}). {_USE_ANOTHER}"
                )
            if self.versions:
                key = str(row[self.id_field])
                if key in self.versions:
                    lines[key] += 1
                    if lines[key] != self.versions[key]:
                        continue  # an earlier version: a later line of this id follows
            counted[_status_of(row)] += 1
            yield row
        short = sorted(k for k, n in self.versions.items() if lines[k] != n)
        if short:
            raise BackupError(
                f"{self.path}: {len(short)} row(s) (e.g. id {short[0]!r}) have another number "
                f"of versions than the manifest says: the data was changed after the backup "
                f"was written. {_USE_ANOTHER}"
            )
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

    def __init__(self, raw: IO[bytes]) -> None:
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


def _v2_rows(store: BackupStore, name: str, sha256: str) -> Iterator[Any]:
    where = store.location(name)
    try:
        raw = store.open_read(name)
    except OSError as exc:
        raise BackupError(f"Cannot read {where}: {exc}.") from None
    with raw:
        source = _HashingReader(raw)
        try:
            with gzip.GzipFile(filename="", mode="rb", fileobj=source) as data:
                yield from _json_lines(where, data)
            actual = source.drain()
        except EOFError:
            raise BackupError(_truncated(where)) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise BackupError(f"{where} is damaged ({exc}). {_USE_ANOTHER}") from None
        except OSError as exc:
            raise BackupError(f"Cannot read {where}: {exc}.") from None
    if actual != sha256:
        raise BackupError(
            f"Checksum mismatch: {where} has sha256 {actual}, its manifest says {sha256}; the "
            f"file was changed after the backup was written. {_USE_ANOTHER}"
        )


def _json_lines(where: str, lines: Iterable[bytes]) -> Iterator[Any]:
    for number, line in enumerate(lines, start=1):
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise BackupError(
                f"{where}: line {number} is not JSON ({exc}). {_USE_ANOTHER}"
            ) from None


def _truncated(where: str) -> str:
    return (
        f"{where} is truncated: its data ends before the end of the backup (cut off while "
        f"being written or copied). {_USE_ANOTHER}"
    )


def _v1_rows(store: BackupStore, name: str) -> Iterator[Any]:
    yield from _v1_checked(store.location(name), _load_json(store, name))["rows"]


def _v1_checked(where: str, document: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(document.get("rows"), list):
        raise BackupError(
            f"{where} is a {V1_FORMAT} backup without its 'rows' list. {_USE_ANOTHER}"
        )
    return document


def _load_json(store: BackupStore, name: str) -> dict[str, Any]:
    where = store.location(name)
    try:
        document = json.loads(store.read_bytes(name))
    except OSError as exc:
        raise BackupError(f"Cannot read {where}: {exc}.") from None
    except ValueError:
        raise BackupError(_not_a_backup(where, "it is not JSON")) from None
    if not isinstance(document, dict):
        raise BackupError(_not_a_backup(where, "it is not a JSON object"))
    return document


def _not_a_backup(where: str, why: str) -> str:
    return (
        f"{where} is not a backup ({why}). Give the backup's {MANIFEST_SUFFIX} or "
        f"{DATA_SUFFIX} file, or an old {V1_FORMAT} .json file."
    )


def _exists(store: BackupStore, name: str) -> bool:
    try:
        return store.exists(name)
    except OSError as exc:
        raise BackupError(f"Cannot read {store.location(name)}: {exc}.") from None


def info_of(backup: Backup) -> BackupInfo:
    """A finished v2 backup, opened again, as its writer described it."""
    if backup.manifest_name is None or backup.sha256 is None:
        raise BackupError(f"{backup.path} is a v1 backup: no run of this version wrote it.")
    return BackupInfo(
        store=backup.store,
        data_name=backup.name,
        manifest_name=backup.manifest_name,
        counts=backup.counts,
        total=backup.total,
        sha256=backup.sha256,
    )


def open_backup(path: str | Path, store: BackupStore | None = None) -> Backup:
    """Open a backup from its manifest, its data file, or an old v1 .json document: a
    file name in `store`, or without a store a local path or fsspec URL.

    Reads the manifest (for v1 the whole document) and checks that the data file exists;
    the rows are checked as `Backup.iter_rows()` streams them. Raises BackupError.
    """
    if store is None:
        store, name = split_location(path)
    else:
        name = str(path)
    where = store.location(name)
    if name.endswith(DATA_SUFFIX + PARTIAL_SUFFIX):
        raise BackupError(
            f"{where} is an unfinished backup: the run writing it stopped before the end. "
            "It holds only part of the rows; use another backup."
        )
    if not _exists(store, name):
        raise BackupError(f"Backup file {where} does not exist.")
    if name.endswith(DATA_SUFFIX):
        return _open_v2(store, _manifest_of(store, name))
    if not name.endswith(".json"):
        raise BackupError(_not_a_backup(where, "unexpected file name"))
    document = _load_json(store, name)
    found = document.get("format")
    if found in (FORMAT, V3_FORMAT):
        return _open_v2(store, name, document)
    if found == V1_FORMAT:
        return _open_v1(store, name, _v1_checked(where, document))
    if isinstance(found, str) and found.startswith("reflexio-pipelines-backup/"):
        raise BackupError(
            f"{where} is a {found} backup; this version reads {V3_FORMAT}, {FORMAT} and "
            f"{V1_FORMAT}. "
            "Restore it with the version of the pipelines that wrote it."
        )
    raise BackupError(_not_a_backup(where, f"format {found!r}"))


def _manifest_of(store: BackupStore, data_name: str) -> str:
    manifest = data_name[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX
    if not _exists(store, manifest):
        raise BackupError(
            f"Missing manifest: {store.location(manifest)} does not exist, so "
            f"{store.location(data_name)} cannot be checked. Either the run that wrote it "
            "stopped before finishing (the backup is incomplete) or the manifest was not "
            "copied with it: copy it next to the data file."
        )
    return manifest


def _open_v2(store: BackupStore, manifest: str, document: dict[str, Any] | None = None) -> Backup:
    document = _load_json(store, manifest) if document is None else document
    where = store.location(manifest)
    if not manifest.endswith(MANIFEST_SUFFIX):
        raise BackupError(
            f"{where} is a backup manifest but is not named <stem>{MANIFEST_SUFFIX}, so its "
            f"data file <stem>{DATA_SUFFIX} cannot be found: rename it back."
        )
    data = manifest[: -len(MANIFEST_SUFFIX)] + DATA_SUFFIX
    if not _exists(store, data):
        raise BackupError(
            f"Missing data file: {store.location(data)}, which holds the rows of {where}, "
            "does not exist. Copy it next to the manifest."
        )
    sha256 = _field(where, document, "sha256", str)
    total = _field(where, document, "total", int)
    backup = _backup(store, data, manifest, document, total, sha256)
    if backup.format == V3_FORMAT:
        backup = replace(backup, versions=_versions(where, document, total))
    if document.get("id_field") != backup.id_field:
        _malformed(where, "id_field", f"{backup.kind} rows are keyed by {backup.id_field!r}")
    if total != sum(backup.counts.values()):
        _malformed(where, "total", f"{total} is not the sum of counts {backup.counts}")
    return backup


def _versions(where: str, document: dict[str, Any], total: int) -> dict[str, int]:
    """A v3 manifest's `versions`, checked against its `lines` and `total`."""
    versions = _field(where, document, "versions", dict)
    if not versions or not all(
        isinstance(k, str) and type(v) is int and v >= 2 for k, v in versions.items()
    ):
        _malformed(where, "versions", "expected ids mapped to 2 or more lines")
    lines = _field(where, document, "lines", int)
    if lines != total + sum(n - 1 for n in versions.values()):
        _malformed(where, "lines", f"{lines} lines cannot hold {total} rows and their versions")
    return versions


def _open_v1(store: BackupStore, name: str, document: dict[str, Any]) -> Backup:
    return _backup(store, name, None, document, len(document["rows"]), None)


def _backup(
    store: BackupStore,
    name: str,
    manifest: str | None,
    document: dict[str, Any],
    total: int,
    sha256: str | None,
) -> Backup:
    source = store.location(manifest or name)
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
        store=store,
        name=name,
        manifest_name=manifest,
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


def _field(where: str, document: dict[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(document.get(name), types):
        _malformed(where, name, f"missing or of the wrong type ({document.get(name)!r})")
    return document.get(name)


def _malformed(where: str, name: str, why: str) -> NoReturn:
    raise BackupError(
        f"{where} has a bad {name!r} field: {why}. The file was edited or damaged. {_USE_ANOTHER}"
    )
