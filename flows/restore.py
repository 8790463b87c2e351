"""Restore profiles from a backup written by the profile regeneration flow, keeping what
was learned since.

How: Reflexio 0.2.32 has POST /api/add_user_profile, its own import path, which stores a
profile row as given (INSERT OR REPLACE by profile_id: id, content, source, status and
timestamps kept; the embedding is recomputed by the server). The plan (core/restore_plan.py)
decides every row's action before anything is written: put the rows the backed-up run
changed (its touched-ids file) back as they were backed up where they are still there,
re-create only the rows its upgrade deleted, and delete the rows it promoted; keep the rows
learned since, unless `delete_newer`; never bring back a row that is gone for any other
reason (deleted by a user, expired, superseded by dedup, erased through the API: counted as
"gone since the backup"), nor any row of a user clear-user-data erased after the backup. A
dry run reports the counts and writes nothing. Afterwards the server is planned again and
checked id by id. Deletes go DELETE_BATCH ids a call and re-creates RECREATE_BATCH rows a
call, so a restore of any size is accepted by the server; every write is idempotent by id
and the plan is made from the server's rows, so running a restore again after a partial
one finishes it.

Refused, with nothing written (fail closed): a backup without its run's touched-ids file
(an old or hand-made backup: every missing row would be re-created), unless
`recreate_missing=True` accepts that; no erasure record for the server in `records_dir`
(nothing proves nobody was erased), unless `assume_no_erasures=True` accepts that.

Bad input (no such file, not a backup, a backup of playbooks or of another server, an
unreadable touched-ids file or erasure record) ends the run Failed before the server is
called. The backup is streamed, never held whole: the planning pass checks the entire file
(checksum, counts) before anything is written; the server's rows are held as id -> digest.

What cannot be re-created: derived state such as agent playbooks aggregated from the newer
rows, and the profile change log (the server appends a 'create' event for a re-created row).
User-playbook backups are refused: add_user_playbook assigns new ids and cannot undo H6
tombstones, so it would duplicate rather than restore; use the playbook flow's way back.
"""

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from core.backup import Backup
from core.restore_inputs import RestoreInputs, load_inputs
from core.restore_plan import (
    OnServer,
    RestorePlan,
    name_users,
    on_server,
    plan_restore,
    restore_problems,
)
from core.state import name_ids
from deployments import catalogue
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import run_id as flow_run_id
from flows.flat_params import flat_parameters
from flows.lock import LockLost, ensure_still_held, holds_server_lock
from flows.params import RestoreParams
from reflexio_api import ReflexioError, ReflexioSettings
from tasks import events
from tasks.backups import locate_file, open_location
from tasks.journal import delete_journal, journal_run_again
from tasks.report import RunSummary
from tasks.server import (
    RECREATE_BATCH,
    add_profiles,
    delete_profiles_in_batches,
    in_batches,
    list_profiles,
    profile_counts,
)


def _server_rows(settings: ReflexioSettings) -> dict[str, OnServer]:
    """Every profile on the server (three statuses): id -> status and digest."""
    return {
        pid: held
        for status in ("current", "pending", "archived")
        for pid, held in on_server(list_profiles(settings, status)).items()
    }


def _plan(inputs: RestoreInputs, server: dict[str, OnServer]) -> RestorePlan:
    """A full, checked pass over the backup against the server's rows."""
    return plan_restore(inputs.backup.iter_rows(), server, inputs.run, inputs.erased)


def _write(settings: ReflexioSettings, backup: Backup, ids: set[str]) -> None:
    """Write the backed-up rows with these ids as they were backed up, a page at a time."""
    rows = (r for r in backup.iter_rows() if r["profile_id"] in ids)
    for page in in_batches(rows, RECREATE_BATCH):
        ensure_still_held(settings.url)
        add_profiles(settings, page)


def _actions(plan: RestorePlan, delete_newer: bool) -> str:
    """Rows per action, in words."""
    newer = "deleted" if delete_newer else "kept (delete_newer=True deletes them)"
    text = (
        f"re-create {len(plan.recreate)}, re-status {len(plan.restatus)}, delete "
        f"{len(plan.undo)} promoted by the backed-up run; {len(plan.newer)} learned since "
        f"the backup {newer}"
    )
    if plan.gone:
        text += f"; gone since the backup, not re-created: {len(plan.gone)}"
        if plan.gone_users:
            text += (
                f" (every row of {name_users(plan.gone_users)}: no row of theirs is left on "
                "the server)"
            )
    if plan.erased_users:
        text += (
            f"; {plan.erased_rows} row(s) of {len(plan.erased_users)} user(s) erased since "
            f"the backup not restored ({name_users(plan.erased_users)})"
        )
    return text


def _report(summary: RunSummary, inputs: RestoreInputs, plan: RestorePlan) -> None:
    """The inputs and every action's ids (a few of each) in the summary."""
    if inputs.run is None:
        summary.note(
            "No touched-ids file beside the backup, accepted by recreate_missing=True: every "
            "backed-up row the server no longer has is re-created (rows users deleted, "
            "expired or superseded since included), the rows that run promoted cannot be "
            "told from rows learned since, so they count as newer, and every backed-up row "
            "the server holds differently is put back. delete_newer=True removes the newer "
            "rows."
        )
    else:
        summary.extra["touched-ids file"] = f"`{inputs.touched_file}`"
    summary.extra["erasure records"] = ", ".join(f"`{p}`" for p in inputs.records)
    if inputs.records_missing:
        summary.note(
            "No erasure record ("
            + ", ".join(f"`{p}`" for p in inputs.records_missing)
            + "), accepted by assume_no_erasures=True: nobody is taken as erased."
        )
    summary.extra["rows in backup"] = inputs.backup.total
    for label, ids in (
        ("re-create", plan.recreate),
        ("re-status", plan.restatus),
        ("delete (promoted by the run)", plan.undo),
        ("newer (learned since)", plan.newer),
        ("changed since by others (kept)", plan.kept),
        ("gone since the backup, not re-created", plan.gone),
    ):
        summary.extra[label] = f"{len(ids)}" + (f": {name_ids(ids)}" if ids else "")
    if plan.erased_users:
        summary.extra["erased since the backup (not restored)"] = (
            f"{plan.erased_rows} row(s) of {name_users(plan.erased_users)}"
        )
    if plan.gone_users:
        summary.note(
            f"{len(plan.gone_users)} user(s) have no row left on the server "
            f"({name_users(plan.gone_users)}): erased or deleted outside this tool, so the "
            "rows the backed-up run deleted of theirs are not re-created."
        )
    if plan.pending_left:
        summary.note(f"{plan.pending_left} PENDING row(s) in the backup are left alone.")


@flow(
    name="restore-profiles",
    flow_run_name=run_names.restore,
    timeout_seconds=FLOW_TIMEOUT_S["restore-profiles"],
    validate_parameters=True,
    persist_result=True,  # the outcome is read from the API after the run (docs)
)
@flat_parameters(RestoreParams)
@holds_server_lock
def restore_profiles(params: RestoreParams) -> State:
    """Undo the backed-up run from its backup, keeping rows learned since by default and
    never bringing back a row gone since for another reason. Refuses, writing nothing, a
    backup without its touched-ids file unless `recreate_missing=True`, and a records_dir
    without the server's erasure record unless `assume_no_erasures=True`."""
    settings = params.settings()
    summary = RunSummary(title="Restore profiles", server=settings.url)
    summary.backup_path = str(params.backup_file)
    written = False
    try:
        store, name = locate_file(params.backup_file)
        records = open_location(params.records_dir)
        inputs = load_inputs(
            name,
            settings.url,
            records,
            params.allow_other_server,
            store,
            recreate_missing=params.recreate_missing,
            assume_no_erasures=params.assume_no_erasures,
        )
        summary.counts_before = profile_counts(settings).as_dict()
        plan = _plan(inputs, _server_rows(settings))
        _report(summary, inputs, plan)
        if params.dry_run:
            summary.decision = (
                f"Dry run, nothing written; would {_actions(plan, params.delete_newer)}."
            )
            return Completed(message=summary.decision, data=plan.counts())
        get_run_logger().info("Restoring: will %s.", _actions(plan, params.delete_newer))
        ensure_still_held(settings.url)
        journal_run_again(settings.url, "restore", flow_run_id(), params.run_again())
        written = True
        _write(settings, inputs.backup, plan.write)
        ensure_still_held(settings.url)
        delete_profiles_in_batches(settings, sorted(plan.undo))
        if params.delete_newer:
            ensure_still_held(settings.url)
            delete_profiles_in_batches(settings, sorted(plan.newer))
        summary.counts_after = profile_counts(settings).as_dict()
        server_after = _server_rows(settings)
        problems = restore_problems(
            plan, _plan(inputs, server_after), server_after.keys(), params.delete_newer
        )
        events.emit(
            catalogue.EVENT_RESTORED,
            settings.url,
            backup=str(params.backup_file),
            verified=not problems,
            counts=plan.counts(),
        )
        if problems:
            summary.decision = (
                f"Restore incomplete: the server differs from the plan: {'; '.join(problems)}. "
                "The next writer on this server runs it again (run journal), or run it again."
            )
            return Failed(message=summary.decision, data=plan.counts())
        ensure_still_held(settings.url)
        delete_journal(settings.url)
        summary.decision = (
            f"Restored from {params.backup_file}, checked by id: "
            f"{_actions(plan, params.delete_newer)}."
        )
        return Completed(message=summary.decision, data=plan.counts())
    except LockLost as exc:
        summary.decision = f"Restore stopped: {exc}" + ("" if written else " Nothing was written.")
        return Failed(message=summary.decision)
    except (ValueError, ReflexioError) as exc:
        after = (
            "Rows may have been written: the next writer on this server runs the restore again "
            "(run journal), or run it again (it is idempotent)."
            if written
            else "Nothing was written."
        )
        summary.decision = f"Restore failed: {exc} {after}"
        return Failed(message=summary.decision)
    finally:
        summary.publish(catalogue.restore_artifact(settings.url))
        get_run_logger().info("Decision: %s", summary.decision)
