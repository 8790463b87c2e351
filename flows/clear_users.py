"""Clear users' data: clear_user_data per user, then listings prove nothing of theirs
remains. H9's anonymised leftovers (rows that were theirs, now with user_id null) are
found by the ids listed before clearing, reported, and deleted by id. Bad input (empty
list, blank ids) is refused by parameter validation before any server call.

Before the first clear_user_data call, every user is recorded as erased (with the time) in
the server's erasure records (core/erasures.py), which restore-profiles reads so that a
backup taken before the erasure does not bring the user back. Recording first means a crash
can leave a record of an erasure that did not happen, never an erased user without a
record. The run journal (core/journal.py) is written next, before the first erasure, and
removed when nothing of the users remains: a run that dies half-way is run again by the
next writer on the server, with the ids the dead run listed as the users' (`listed_before`):
a user it had cleared may have left anonymised rows (H9) that no later listing can tell as
theirs.

No stall check here on purpose: erasing data calls no LLM, and a stall must not delay it.
"""

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from core.erasures import ErasureRecordError, record_erasures
from core.identity import server_key
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import run_id as flow_run_id
from flows.flat_params import flat_parameters
from flows.lock import ensure_still_held, holds_server_lock
from flows.params import ClearUsersParams
from tasks.backups import BackupLocationError, open_location
from tasks.clear_users import (
    UserReport,
    clear_user,
    delete_leftovers,
    find_leftovers,
    inventory,
    remaining,
)
from tasks.journal import delete_journal, journal_run_again

ARTIFACT_KEY = "clear-users-summary"


@flow(
    name="clear-user-data",
    flow_run_name=run_names.clear_users,
    timeout_seconds=FLOW_TIMEOUT_S["clear-user-data"],
    validate_parameters=True,
    persist_result=True,  # the outcome is read from the API after the run (docs)
)
@flat_parameters(ClearUsersParams)
@holds_server_lock
def clear_users(params: ClearUsersParams) -> State:
    """Erase the users' rows; Completed when nothing of theirs remains, else Failed."""
    logger = get_run_logger()
    settings = params.settings()

    before = inventory(settings).with_listed(params.listed_before)
    reports = [
        UserReport(
            user_id=u,
            profiles_before=len(before.profile_ids_of(u)),
            playbooks_before=len(before.playbook_ids_of(u)),
        )
        for u in params.user_ids
    ]
    server = server_key(settings.url)
    try:
        store = open_location(params.records_dir)
        records = record_erasures(store, server, params.user_ids, datetime.now(UTC))
    except (ErasureRecordError, BackupLocationError) as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc))
    again = {**params.run_again(), "listed_before": before.listed(params.user_ids)}
    ensure_still_held(settings.url)
    journal_run_again(settings.url, "clear_users", flow_run_id(), again)
    for report in reports:
        ensure_still_held(settings.url)
        report.server_deleted = clear_user(settings, report.user_id)

    after = inventory(settings)
    leftover_profiles: list[str] = []
    leftover_playbooks: list[int] = []
    for report in reports:
        find_leftovers(before, after, report)
        leftover_profiles += report.leftover_profiles
        leftover_playbooks += report.leftover_playbooks
        if report.leftover_profiles or report.leftover_playbooks:
            logger.warning(
                "User %s: %d profile(s) and %d user playbook(s) survived clear_user_data "
                "(%d anonymised, H9): profile ids %s, user playbook ids %s; deleting them by id.",
                report.user_id,
                len(report.leftover_profiles),
                len(report.leftover_playbooks),
                report.anonymised,
                report.leftover_profiles,
                report.leftover_playbooks,
            )
    if leftover_profiles or leftover_playbooks:
        ensure_still_held(settings.url)
        delete_leftovers(settings, sorted(set(leftover_profiles)), sorted(set(leftover_playbooks)))
        final = inventory(settings)
    else:
        final = after
    for report in reports:
        report.remaining_after = remaining(final, before, report.user_id)

    rows = [r.row() for r in reports]
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=rows,
        description=(
            f"Clear user data on {settings.url}, erasures recorded in {records}. "
            "'leftover_*' are rows that were the user's before clearing and survived "
            "clear_user_data; 'anonymised_leftovers (H9)' are those the server kept with "
            "user_id null (a merged playbook's survivor). All leftovers were deleted by id; "
            "'remaining_after' must be 0."
        ),
    )
    summary = {"users": rows, "erasures_recorded_in": str(records)}
    still = {r.user_id: r.remaining_after for r in reports if r.remaining_after}
    if still:
        message = f"Rows of these users remain after clearing and deleting by id: {still}"
        logger.error("%s", message)
        return Failed(message=message, data=summary)
    ensure_still_held(settings.url)
    delete_journal(settings.url)
    anonymised = sum(r.anonymised for r in reports)
    message = f"Cleared {len(reports)} user(s); nothing of theirs remains" + (
        f" ({anonymised} anonymised leftover(s) deleted by id, H9)" if anonymised else ""
    )
    logger.info("Decision: %s", message)
    return Completed(message=message, data=summary)
