"""Where backup files live: a local directory, or any fsspec URL (`s3://bucket/prefix`,
`memory://...`), so that backups can outlive the machine that wrote them.

A store is one flat folder of files addressed by name. Every write is whole or absent:
`write_bytes` goes through a temporary name (fsynced and renamed locally; uploaded then
moved remotely), and `move_in` puts a finished local file in place (renamed locally;
uploaded and its size checked remotely). Errors of a remote file system become OSErrors
that name the location and the error's type, never the store's credentials.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import fsspec

TMP_SUFFIX = ".tmp"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackupStore(ABC):
    """One folder of backup files, addressed by file name."""

    @abstractmethod
    def location(self, name: str) -> str:
        """How the file is named to people: a path, a URL, or `block:<name>/<file>`."""

    @abstractmethod
    def staging_dir(self) -> Path:
        """A local directory where a file is written before `move_in`."""

    @abstractmethod
    def exists(self, name: str) -> bool:
        """Whether the file exists."""

    @abstractmethod
    def open_read(self, name: str) -> IO[bytes]:
        """The file opened for reading (FileNotFoundError when it does not exist)."""

    @abstractmethod
    def write_bytes(self, name: str, data: bytes) -> None:
        """Write the file whole and durably; a failure leaves the old file or none."""

    @abstractmethod
    def append_bytes(self, name: str, data: bytes) -> None:
        """Add data at the end of the file (created when missing), durably."""

    @abstractmethod
    def move_in(self, local: Path, name: str) -> None:
        """Put a finished local file (in `staging_dir`) in the store under `name`."""

    @abstractmethod
    def list(self) -> list[str]:
        """The names of the files in the folder (none when it does not exist)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the file; nothing when it does not exist."""

    def read_bytes(self, name: str) -> bytes:
        """The whole file (FileNotFoundError when it does not exist)."""
        with self.open_read(name) as handle:
            return handle.read()


class LocalStore(BackupStore):
    """A directory on this machine: fsynced files, atomic renames."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.directory)!r})"

    def _path(self, name: str) -> Path:
        return self.directory / name

    def location(self, name: str) -> str:
        return str(self._path(name).absolute())  # found again from any working directory

    def staging_dir(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def open_read(self, name: str) -> IO[bytes]:
        return self._path(name).open("rb")

    def write_bytes(self, name: str, data: bytes) -> None:
        """Temp file, fsync, rename, fsync the directory: the file is whole or absent."""
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        try:
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def append_bytes(self, name: str, data: bytes) -> None:
        """One O_APPEND write, fsynced (the directory too when the file is new)."""
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(path.parent)

    def move_in(self, local: Path, name: str) -> None:
        os.replace(local, self._path(name))
        _fsync_dir(self.directory)

    def list(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_file())

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


def _without_credentials(url: str) -> str:
    """The URL without a `user:password@` part, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class FsspecStore(BackupStore):
    """A folder on any fsspec file system. Credentials come from `storage_options` or the
    environment (for S3: AWS_ACCESS_KEY_ID, an instance role, ...); they are never shown."""

    def __init__(
        self, url: str, storage_options: Mapping[str, Any] | None = None, label: str = ""
    ) -> None:
        self.label = (label or _without_credentials(url)).rstrip("/")
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except ImportError as exc:
            raise OSError(
                f"Cannot open {self.label}: {exc}. Install the package for its protocol "
                "(for s3://: pip install 'reflexio-pipelines[s3]')."
            ) from None
        self.root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"FsspecStore({self.label!r})"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def location(self, name: str) -> str:
        return f"{self.label}/{name}"

    @contextlib.contextmanager
    def _errors(self, action: str, name: str = "") -> Iterator[None]:
        """Any error of the file system as an OSError naming the location and its type;
        FileNotFoundError passes through."""
        try:
            yield
        except FileNotFoundError:
            raise
        except Exception as exc:
            where = self.location(name) if name else self.label
            raise OSError(f"{action} {where} failed: {type(exc).__name__}: {exc}") from None

    def staging_dir(self) -> Path:
        return Path(tempfile.gettempdir())

    def exists(self, name: str) -> bool:
        with self._errors("Looking up", name):
            self.fs.invalidate_cache(self._path(name))
            return bool(self.fs.isfile(self._path(name)))

    def open_read(self, name: str) -> IO[bytes]:
        with self._errors("Reading", name):
            return self.fs.open(self._path(name), "rb")

    def write_bytes(self, name: str, data: bytes) -> None:
        """Written under a temporary name, then moved: whole or absent on any file system."""
        tmp = self._path(name + TMP_SUFFIX)
        with self._errors("Writing", name):
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, self._path(name))

    def append_bytes(self, name: str, data: bytes) -> None:
        """Read, add, write whole: an object store cannot append. Two appends at once
        could lose one; callers hold the server's lock."""
        try:
            old = self.read_bytes(name)
        except FileNotFoundError:
            old = b""
        self.write_bytes(name, old + data)

    def move_in(self, local: Path, name: str) -> None:
        """Upload, check the size that arrived, then remove the local copy."""
        size = local.stat().st_size
        with self._errors("Uploading to", name):
            self.fs.put_file(str(local), self._path(name))
            self.fs.invalidate_cache(self._path(name))
            arrived = self.fs.size(self._path(name))
        if arrived != size:
            raise OSError(
                f"Uploading to {self.location(name)} failed: {arrived} of {size} bytes arrived."
            )
        local.unlink()

    def list(self) -> list[str]:
        with self._errors("Listing"):
            self.fs.invalidate_cache(self.root)
            try:
                entries = self.fs.ls(self.root, detail=True)
            except FileNotFoundError:
                return []
        return sorted(
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "file"
        )

    def delete(self, name: str) -> None:
        with self._errors("Deleting", name), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(name))


def is_url(location: str) -> bool:
    """Whether a location names a file system by its protocol (`s3://...`)."""
    return "://" in location and not location.startswith("file://")


def open_store(
    location: str | Path, storage_options: Mapping[str, Any] | None = None, label: str = ""
) -> BackupStore:
    """The store of a local directory (a path or `file://` URL) or an fsspec URL."""
    text = str(location)
    if not is_url(text):
        return LocalStore(Path(text.removeprefix("file://")))
    return FsspecStore(text, storage_options, label)


def as_store(store: BackupStore | Path | str) -> BackupStore:
    """A store as given, or the store of a local directory or URL."""
    return store if isinstance(store, BackupStore) else open_store(store)


def split_location(location: str | Path) -> tuple[BackupStore, str]:
    """The store holding a file given by its path or URL, and the file's name in it."""
    text = str(location)
    if not is_url(text):
        path = Path(text.removeprefix("file://"))
        return LocalStore(path.parent), path.name
    folder, _, name = text.rstrip("/").rpartition("/")
    return open_store(folder), name
