"""Restore profiles from a backup file written by the profile regeneration flow.

How: Reflexio 0.2.32 has POST /api/add_user_profile, its own import path, which stores a
profile row as given (INSERT OR REPLACE by profile_id: id, content, source, status and
timestamps kept; the embedding is recomputed by the server). So every backed-up row,
CURRENT or ARCHIVED, is re-created exactly as it was, including rows the upgrade deleted.
With `remove_newer` (default) the CURRENT/ARCHIVED rows that are not in the backup (those an
upgrade promoted since) are deleted by id, so the server's CURRENT and ARCHIVED sets equal
the backup again. PENDING rows are never touched. A dry run only reports the differences.

The backup (a v2 manifest or data file, or an old v1 .json) is streamed, never held whole:
a first pass checks the entire file (checksum, counts) and collects its ids before anything
is written; a second re-creates the rows a page at a time; a third compares the result. The
server's rows are held as id -> digest of PROFILE_KEYS, not as rows.

What cannot be re-created: derived state such as agent playbooks aggregated from the newer
rows, and the profile change log (the server appends a 'create' event for a re-created row).
User-playbook backups are refused: add_user_playbook assigns new ids and cannot undo H6
tombstones, so it would duplicate rather than restore; use the playbook flow's way back.
"""

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from prefect import flow
from prefect.states import Completed, Failed, State

from core.backup import Backup, open_backup
from core.identity import server_key
from core.kinds import PROFILE_KEYS, comparable
from deployments import catalogue
from flows.lock import holds_server_lock
from flows.params import RestoreParams
from reflexio_api import ReflexioError, ReflexioSettings
from tasks import events
from tasks.report import RunSummary
from tasks.server import (
    RECREATE_BATCH,
    add_profiles,
    delete_profiles,
    in_batches,
    list_profiles,
    profile_counts,
)

RESTORED: tuple[Literal["current", "archived"], ...] = ("current", "archived")
"""The statuses a restore puts back; a v2 backup also holds PENDING rows, left alone."""


def _fingerprint(row: Mapping[str, Any]) -> bytes:
    """A digest of what a restore compares in a row: PROFILE_KEYS, as `comparable` reads them."""
    (key,) = comparable([row], PROFILE_KEYS)
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()


def _server_rows(settings: ReflexioSettings) -> dict[str, bytes]:
    """The server's CURRENT and ARCHIVED profiles: id -> fingerprint."""
    return {
        row["profile_id"]: _fingerprint(row)
        for status in RESTORED
        for row in list_profiles(settings, status)
    }


def _restorable(backup: Backup) -> Iterator[dict[str, Any]]:
    """The backed-up CURRENT and ARCHIVED rows, streamed (CURRENT rows carry status null)."""
    return (r for r in backup.iter_rows() if (r.get("status") or "current") in RESTORED)


def _plan(backup: Backup, present: Mapping[str, bytes]) -> tuple[set[str], int]:
    """One checked pass over the backup: its ids, and how many rows the server lacks or
    holds differently. Nothing is written before this pass has verified the whole file."""
    wanted: set[str] = set()
    changed = 0
    for row in _restorable(backup):
        wanted.add(row["profile_id"])
        changed += present.get(row["profile_id"]) != _fingerprint(row)
    return wanted, changed


def _recreate(settings: ReflexioSettings, backup: Backup, present: Mapping[str, bytes]) -> int:
    """Re-create, a page at a time, the backed-up rows the server lacks or holds differently."""
    added = 0
    for page in in_batches(_restorable(backup), RECREATE_BATCH):
        todo = [r for r in page if present.get(r["profile_id"]) != _fingerprint(r)]
        if todo:
            added += add_profiles(settings, todo)
    return added


def _equal(backup: Backup, wanted: set[str], after: Mapping[str, bytes]) -> bool:
    """Whether the server's CURRENT and ARCHIVED profiles are exactly the backed-up rows."""
    return after.keys() == wanted and all(
        after[r["profile_id"]] == _fingerprint(r) for r in _restorable(backup)
    )


@flow(name="restore-profiles", validate_parameters=True)
@holds_server_lock
def restore_profiles(params: RestoreParams) -> State:
    """Make the server's CURRENT and ARCHIVED profiles equal to a backup file again."""
    settings = params.settings()
    summary = RunSummary(title="Restore profiles", server=settings.url)
    summary.backup_path = str(params.backup_file)
    try:
        backup = open_backup(params.backup_file)
        if backup.kind != "profiles":
            raise ValueError(
                f"{params.backup_file} holds {backup.kind}, not profiles; only profile "
                "backups can be restored in place (see docs/pipelines.md)."
            )
        if backup.server != server_key(settings.url):
            summary.note(
                f"The backup was taken from {backup.server}, restoring into "
                f"{server_key(settings.url)}."
            )
        summary.counts_before = profile_counts(settings).as_dict()
        present = _server_rows(settings)
        wanted, changed = _plan(backup, present)
        newer = [pid for pid in present if pid not in wanted]
        summary.extra["rows in backup"] = backup.total
        left_alone = backup.total - sum(backup.counts.get(s, 0) for s in RESTORED)
        if left_alone:
            summary.note(f"{left_alone} PENDING row(s) in the backup are left alone.")
        summary.extra["rows to re-create or fix"] = changed
        summary.extra["rows not in the backup"] = (
            f"{len(newer)} ({'deleted' if params.remove_newer else 'kept'})"
        )
        if params.dry_run:
            summary.decision = (
                f"Dry run: would re-create {changed} row(s) and "
                f"{'delete' if params.remove_newer else 'keep'} {len(newer)} newer row(s)."
            )
            return Completed(message=summary.decision)
        added = _recreate(settings, backup, present)
        removed = delete_profiles(settings, newer) if params.remove_newer else 0
        summary.counts_after = profile_counts(settings).as_dict()
        equal = _equal(backup, wanted, _server_rows(settings))
        events.emit(
            catalogue.EVENT_RESTORED, settings.url, backup=str(params.backup_file), equal=equal
        )
        if not equal and params.remove_newer:
            summary.decision = (
                f"Restore incomplete: re-created {added}, deleted {removed}, but the server's "
                "CURRENT/ARCHIVED rows still differ from the backup."
            )
            return Failed(message=summary.decision)
        summary.decision = (
            f"Restored from {params.backup_file}: re-created {added} row(s), deleted "
            f"{removed} newer row(s); CURRENT/ARCHIVED "
            f"{'equal' if equal else 'contain'} the backup."
        )
        return Completed(message=summary.decision)
    except (ValueError, ReflexioError) as exc:
        summary.decision = f"Restore failed: {exc}"
        return Failed(message=summary.decision)
    finally:
        summary.publish(catalogue.restore_artifact(settings.url))
        print(summary.decision)
