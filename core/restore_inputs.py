"""A restore's inputs, read and checked before the server is called (no Prefect, no HTTP):
the backup, the ids its run changed, and the users erased since it was written.

Every error is a ValueError whose message says what was wrong and what to do.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.backup import Backup, open_backup
from core.erasures import erased_since, erasure_log, read_erasures
from core.identity import server_key
from core.restore_plan import RestoreInputError, RunChanges
from core.touched import touched_path


@dataclass(frozen=True)
class RestoreInputs:
    """What a restore works from."""

    backup: Backup
    run: RunChanges | None
    touched_file: Path | None
    erased: frozenset[str]
    records: tuple[Path, ...]


def load_inputs(
    backup_file: Path, target_url: str, records_dir: Path, allow_other_server: bool
) -> RestoreInputs:
    """Open the backup and read the touched-ids file and the erasure records.

    Raises BackupError, ErasureRecordError or RestoreInputError (all ValueErrors).
    """
    backup = open_backup(backup_file)
    if backup.kind != "profiles":
        raise RestoreInputError(
            f"{backup_file} holds {backup.kind}, not profiles; only profile backups can be "
            "restored in place (docs/pipelines.md gives the playbook flow's way back)."
        )
    target = server_key(target_url)
    if backup.server != target and not allow_other_server:
        raise RestoreInputError(
            f"{backup_file} is a backup of {backup.server}, not of {target}. "
            f"Give a backup of {target} (backup names start with "
            "profiles-<host-port>-), or set allow_other_server=true if you mean to restore "
            "it into this server (e.g. after the server moved)."
        )
    touched = _touched_file(backup)
    run = _read_run(touched) if touched is not None else None
    servers = sorted({target, backup.server})
    records = tuple(erasure_log(records_dir, server) for server in servers)
    erasures: dict[str, datetime] = {}
    for path, server in zip(records, servers, strict=True):
        for user, when in read_erasures(path, server).items():
            erasures[user] = max(when, erasures.get(user, when))
    erased = erased_since(erasures, backup.created_at)
    return RestoreInputs(backup, run, touched, erased, records)


def _touched_file(backup: Backup) -> Path | None:
    """The touched-ids file written beside a v2 backup by its run, when there is one."""
    if backup.manifest_path is None:
        return None
    path = touched_path(backup.manifest_path)
    return path if path.exists() else None


def _read_run(path: Path) -> RunChanges:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise RestoreInputError(
            f"Cannot read {path}, the ids the backed-up run changed ({exc}). Put back the "
            "file the run wrote, or move it away to restore without it (rows not in the "
            "backup then count as newer)."
        ) from None
    return RunChanges.parse(document, str(path))
