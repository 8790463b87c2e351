"""Restore profiles from a backup file written by the profile regeneration flow.

How: Reflexio 0.2.32 has POST /api/add_user_profile, its own import path, which stores a
profile row as given (INSERT OR REPLACE by profile_id: id, content, source, status and
timestamps kept; the embedding is recomputed by the server). So every backed-up row,
CURRENT or ARCHIVED, is re-created exactly as it was, including rows the upgrade deleted.
With `remove_newer` (default) the CURRENT/ARCHIVED rows that are not in the backup (those an
upgrade promoted since) are deleted by id, so the server's CURRENT and ARCHIVED sets equal
the backup again. PENDING rows are never touched. A dry run only reports the differences.

What cannot be re-created: derived state such as agent playbooks aggregated from the newer
rows, and the profile change log (the server appends a 'create' event for a re-created row).
User-playbook backups are refused: add_user_playbook assigns new ids and cannot undo H6
tombstones, so it would duplicate rather than restore; use the playbook flow's way back.
"""

from prefect import flow
from prefect.states import Completed, Failed, State

from flows.params import RestoreParams
from reflexio_api import ReflexioError
from tasks import events
from tasks.domain import PROFILE_KEYS, comparable, read_backup, server_key, server_slug
from tasks.report import RunSummary
from tasks.server import add_profiles, delete_profiles, list_profiles, profile_counts


@flow(name="restore-profiles", validate_parameters=True)
def restore_profiles(params: RestoreParams) -> State:
    """Make the server's CURRENT and ARCHIVED profiles equal to a backup file again."""
    settings = params.settings()
    summary = RunSummary(title="Restore profiles", server=settings.url)
    summary.backup_path = str(params.backup_file)
    try:
        backup = read_backup(params.backup_file)
        if backup.get("kind") != "profiles":
            raise ValueError(
                f"{params.backup_file} holds {backup.get('kind')}, not profiles; only profile "
                "backups can be restored in place (see docs/pipelines.md)."
            )
        if backup.get("server") != server_key(settings.url):
            summary.note(
                f"The backup was taken from {backup.get('server')}, restoring into "
                f"{server_key(settings.url)}."
            )
        rows = backup["rows"]
        summary.counts_before = profile_counts(settings).as_dict()
        present = list_profiles(settings, "current") + list_profiles(settings, "archived")
        wanted = {r["profile_id"] for r in rows}
        newer = [r["profile_id"] for r in present if r["profile_id"] not in wanted]
        by_id = {r["profile_id"]: r for r in present}
        changed = [
            r
            for r in rows
            if r["profile_id"] not in by_id
            or comparable([by_id[r["profile_id"]]], PROFILE_KEYS) != comparable([r], PROFILE_KEYS)
        ]
        summary.extra["rows in backup"] = len(rows)
        summary.extra["rows to re-create or fix"] = len(changed)
        summary.extra["rows not in the backup"] = (
            f"{len(newer)} ({'deleted' if params.remove_newer else 'kept'})"
        )
        if params.dry_run:
            summary.decision = (
                f"Dry run: would re-create {len(changed)} row(s) and "
                f"{'delete' if params.remove_newer else 'keep'} {len(newer)} newer row(s)."
            )
            return Completed(message=summary.decision)
        added = add_profiles(settings, changed)
        removed = delete_profiles(settings, newer) if params.remove_newer else 0
        after = list_profiles(settings, "current") + list_profiles(settings, "archived")
        summary.counts_after = profile_counts(settings).as_dict()
        equal = comparable(after, PROFILE_KEYS) == comparable(rows, PROFILE_KEYS)
        events.emit(events.RESTORED, settings.url, backup=str(params.backup_file), equal=equal)
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
        summary.publish(f"restore-{server_slug(settings.url)}-summary")
        print(summary.decision)
