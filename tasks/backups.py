"""Where backups go, as flow parameters name it, and their retention.

A backup location (`backup_dir`, `records_dir`) is one of:
- a local directory: `backups`, `/var/lib/reflexio/backups`, `file:///...`;
- an fsspec URL: `s3://bucket/prefix` (credentials from the worker's environment);
- `block:<name>`: a Prefect `RemoteFileSystem` block (its `basepath` URL and its fsspec
  `settings`: endpoint, credentials) or `LocalFileSystem` block (its `basepath`).
A backup file (`backup_file`) is such a location followed by `/<file name>`. Credentials
are never a parameter, and never in a message: errors name the location only.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from core.backup import BackupError
from core.backup_store import (
    BackupStore,
    FsspecStore,
    LocalStore,
    is_url,
    open_store,
    split_location,
)
from core.identity import server_key
from core.retention import prune

BLOCK_PREFIX = "block:"
BACKUP_DIR_ENV = "REFLEXIO_BACKUP_DIR"
DEFAULT_BACKUP_DIR = "backups"
_BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")
"""Prefect's rule for block document names."""


class BackupLocationError(BackupError):
    """A backup location that cannot be used; the message says what to do."""


def default_backup_location() -> str:
    """`REFLEXIO_BACKUP_DIR` from the environment, else `backups` (a local directory)."""
    return os.environ.get(BACKUP_DIR_ENV, "").strip() or DEFAULT_BACKUP_DIR


def _check_block_name(name: str) -> None:
    if not _BLOCK_NAME.match(name):
        raise ValueError(
            f"'{BLOCK_PREFIX}{name}' does not name a Prefect block: block names are "
            "lowercase letters, digits and dashes"
        )


def check_location(value: object) -> str:
    """A location as text (a Path is accepted): non-empty, a well-formed block name, or a
    URL whose protocol this machine can open. For parameter validation."""
    text = str(value).strip()
    if not text:
        raise ValueError("a backup location must not be empty (a directory, URL or block:<name>)")
    if text.startswith(BLOCK_PREFIX):
        _check_block_name(text.removeprefix(BLOCK_PREFIX))
    elif is_url(text):
        protocol = text.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except ValueError:
            raise ValueError(f"'{protocol}://' is not a file system fsspec knows") from None
        except ImportError:
            raise ValueError(
                f"'{protocol}://' needs a package this machine lacks (for s3://: pip install "
                "'reflexio-pipelines[s3]')"
            ) from None
    return text


def check_file_location(value: object) -> str:
    """A backup file: a path, a URL, or `block:<name>/<file>`. For parameter validation."""
    text = str(value).strip()
    if not text.startswith(BLOCK_PREFIX):
        return check_location(text)
    name, _, file = text.removeprefix(BLOCK_PREFIX).partition("/")
    _check_block_name(name)
    if not file:
        raise ValueError(f"give the file in the block: '{BLOCK_PREFIX}{name}/<file name>'")
    return text


def _block_store(name: str) -> BackupStore:
    """The store of a RemoteFileSystem or LocalFileSystem block named `name`."""
    for block_type in (RemoteFileSystem, LocalFileSystem):
        try:
            block = block_type.load(name)
        except ValueError:
            continue
        except Exception as exc:
            raise BackupLocationError(
                f"Could not load block '{name}' ({type(exc).__name__}); check the Prefect API."
            ) from None
        if isinstance(block, RemoteFileSystem):
            return FsspecStore(block.basepath, block.settings, label=f"{BLOCK_PREFIX}{name}")
        return LocalStore(Path(block.basepath or "."))
    raise BackupLocationError(
        f"No RemoteFileSystem or LocalFileSystem block named '{name}'. Create one (see "
        "docs/operations.md, backups on S3) or give a directory or URL instead."
    )


def open_location(location: str | Path) -> BackupStore:
    """The store a backup location names (a block is loaded from the Prefect API)."""
    text = str(location)
    try:
        if text.startswith(BLOCK_PREFIX):
            return _block_store(text.removeprefix(BLOCK_PREFIX))
        return open_store(text)
    except OSError as exc:
        raise BackupLocationError(str(exc)) from None


def locate_file(location: str | Path) -> tuple[BackupStore, str]:
    """The store holding a backup file, and the file's name in it."""
    text = str(location)
    if not text.startswith(BLOCK_PREFIX):
        try:
            return split_location(text)
        except OSError as exc:
            raise BackupLocationError(str(exc)) from None
    name, _, file = text.removeprefix(BLOCK_PREFIX).partition("/")
    return _block_store(name), file


def file_exists(location: str) -> bool:
    """True when the backup file at `location` (a path, URL or block:<name>/<file>) exists."""
    store, name = locate_file(location)
    return store.exists(name)


def folder_of(location: str) -> str:
    """The location holding the backup file `location`: its directory, its URL's folder, or
    its block (backups are written at a location's top level)."""
    if location.startswith(BLOCK_PREFIX):
        return location.partition("/")[0]
    if is_url(location):
        return location.rstrip("/").rpartition("/")[0]
    return str(Path(location).parent)


@task(name="prune-backups", cache_policy=NO_CACHE)
def prune_backups(location: str, server_url: str, days: int, run_id: str) -> str:
    """Delete the server's backups older than `days` days in `location`, never the newest
    of each kind nor this run's; returns what was done, in words."""
    store = open_location(location)
    pruned = prune(store, server_url, days, datetime.now(UTC), run_id)
    files = sum(len(b.files) for b in pruned)
    return (
        f"Retention ({days} days): deleted {len(pruned)} backup(s) of {server_key(server_url)} "
        f"({files} file(s)) from {store.location('').rstrip('/')}, keeping the newest of each kind."
        if pruned
        else f"Retention ({days} days): no backup of {server_key(server_url)} to delete."
    )
