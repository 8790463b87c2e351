"""A restore's inputs, read and checked before the server is called (no Prefect, no HTTP):
the backup, the ids its run changed, and the users erased since it was written.

Both fail closed. Without the touched-ids file the rows the run deleted cannot be told from
rows deleted since for any other reason (by users, TTL expiry, dedup, an erasure), so the
restore is refused unless `recreate_missing` accepts re-creating every missing row. Without
an erasure record for the server, nothing proves that nobody was erased since the backup,
so the restore is refused unless `assume_no_erasures` accepts that.

Every error is a ValueError whose message says what was wrong and what to do.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.backup import Backup, open_backup
from core.backup_store import BackupStore, as_store
from core.erasures import erased_since, erasure_name, read_erasures
from core.identity import server_key
from core.restore_plan import RestoreInputError, RunChanges
from core.touched import read_touched_ids, touched_name


@dataclass(frozen=True)
class RestoreInputs:
    """What a restore works from."""

    backup: Backup
    run: RunChanges | None
    touched_file: str | None
    erased: frozenset[str]
    records: tuple[str, ...]
    records_missing: tuple[str, ...] = ()
    """Erasure record files that do not exist (accepted by assume_no_erasures)."""


def load_inputs(
    backup_file: str | Path,
    target_url: str,
    records_dir: BackupStore | Path | str,
    allow_other_server: bool,
    store: BackupStore | None = None,
    *,
    recreate_missing: bool = False,
    assume_no_erasures: bool = False,
) -> RestoreInputs:
    """Open the backup (a name in `store`, or a path or URL) and read the touched-ids file
    beside it and the erasure records in `records_dir`; refuse a backup without its
    touched-ids file unless `recreate_missing`, and a server without an erasure record
    unless `assume_no_erasures` (see the module docstring).

    Raises BackupError, ErasureRecordError or RestoreInputError (all ValueErrors).
    """
    backup = open_backup(backup_file, store)
    where = backup.manifest_path or backup.path
    if backup.kind != "profiles":
        raise RestoreInputError(
            f"{where} holds {backup.kind}, not profiles; only profile backups can be "
            "restored in place (docs/pipelines.md gives the playbook flow's way back)."
        )
    target = server_key(target_url)
    if backup.server != target and not allow_other_server:
        raise RestoreInputError(
            f"{where} is a backup of {backup.server}, not of {target}. "
            f"Give a backup of {target} (backup names start with "
            "profiles-<host-port>-), or set allow_other_server=true if you mean to restore "
            "it into this server (e.g. after the server moved)."
        )
    run, touched = _read_run(backup)
    if run is None and not recreate_missing:
        beside = (
            f"No touched-ids file beside {where} ({touched_name(backup.manifest_name)})"
            if backup.manifest_name is not None
            else f"{where} is an old (v1) backup, which has no touched-ids file"
        )
        raise RestoreInputError(
            f"{beside}: the restore cannot tell the rows its run deleted from rows users "
            "deleted, TTL expired, dedup superseded or an erasure removed since, and would "
            "bring those back. Restore from the backup of a run that upgraded (it writes "
            "that file before its upgrade), or set recreate_missing=true to accept "
            "re-creating every backed-up row the server no longer has (dry_run=true first "
            "says how many)."
        )
    servers = sorted({target, backup.server})
    records = as_store(records_dir)
    missing = tuple(
        records.location(erasure_name(s)) for s in servers if not records.exists(erasure_name(s))
    )
    if missing and not assume_no_erasures:
        raise RestoreInputError(
            f"No erasure record {' or '.join(missing)}: the restore cannot prove that "
            "clear-user-data erased nobody since the backup, and could bring erased users "
            "back. Point records_dir at the location clear-user-data records to (its "
            "records_dir), or, if nobody was ever erased on this server through it, set "
            "assume_no_erasures=true."
        )
    erasures: dict[str, datetime] = {}
    for server in servers:
        for user, when in read_erasures(records, server).items():
            erasures[user] = max(when, erasures.get(user, when))
    erased = erased_since(erasures, backup.created_at)
    names = tuple(records.location(erasure_name(server)) for server in servers)
    return RestoreInputs(backup, run, touched, erased, names, missing)


def _read_run(backup: Backup) -> tuple[RunChanges | None, str | None]:
    """What the backed-up run changed, from the touched-ids file its run wrote beside a v2
    backup, and that file's location; (None, None) when there is none."""
    if backup.manifest_name is None:
        return None, None
    name = touched_name(backup.manifest_name)
    where = backup.store.location(name)
    try:
        document = read_touched_ids(name, backup.store)
    except FileNotFoundError:
        return None, None
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise RestoreInputError(
            f"Cannot read {where}, the ids the backed-up run changed ({exc}). Put back the "
            "file the run wrote, or move it away to restore without it (rows not in the "
            "backup then count as newer)."
        ) from None
    return RunChanges.parse(document, where), where
