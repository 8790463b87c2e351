"""Playbook regeneration for one agent_version: the profile flow's shape, then aggregation.

stall check -> guard -> snapshot CURRENT -> rerun -> gate (PENDING vs the CURRENT snapshot)
-> backup -> upgrade_user_playbooks -> verify (rollback: downgrade_user_playbooks) ->
run_playbook_aggregation.

H6 shapes this flow: a playbook rerun tombstones the CURRENT rows it re-derives (status
"merged", no longer listed), so
- the gate baseline and the backup are the CURRENT/ARCHIVED rows listed BEFORE the rerun;
- when the gate rejects (or on a dry run) the PENDING rows are LEFT in place: deleting them
  would strand the tombstoned users further. The report names the users left without a
  CURRENT playbook and the ways back. The next playbook rerun of that agent_version clears
  them itself (playbook reruns clear their PENDING first), or discard_stale_pending=True
  deletes them by id;
- a rollback with downgrade_user_playbooks only works when the upgrade archived rows; when
  everything was tombstoned there is nothing to restore and the run says so.

Aggregation runs after a verified upgrade; its failure fails the run but does not roll the
user playbooks back (they were verified; aggregation can simply be run again).
"""

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from flows._common import Refused, gate_step, run_regeneration, stalled
from flows.params import PlaybookRegenerationParams
from flows.profile_regeneration import _run_id
from reflexio_api import ReflexioError, ReflexioSettings
from tasks import events
from tasks.domain import (
    Counts,
    backup_document,
    backup_path,
    check_verification,
    describe_failed_operation,
    infer_stall,
    server_slug,
    stale_pending_message,
    users_of,
    users_without_current,
    verify_upgrade,
    write_backup,
)
from tasks.notify import NotificationFailed, send_notification
from tasks.report import RunSummary
from tasks.server import (
    delete_user_playbooks,
    downgrade_user_playbooks,
    list_user_playbooks,
    playbook_counts_of,
    refuse_if_operation_running,
    run_playbook_aggregation,
    start_playbook_rerun,
    upgrade_user_playbooks,
    wait_for_operation,
)
from tasks.stall import check_stall, clear_inferred_stall, report_inferred_stall

SERVICE = "playbook_generation"


def artifact_prefix(settings: ReflexioSettings, agent_version: str) -> str:
    """Artifact keys of this flow, e.g. 'playbook-regen-v1-127-0-0-1-8081'."""
    version = "".join(c if c.isalnum() else "-" for c in agent_version.lower())
    return f"playbook-regen-{version}-{server_slug(settings.url)}"


@task(name="backup-user-playbooks", cache_policy=NO_CACHE)
def backup_playbooks(
    settings: ReflexioSettings,
    agent_version: str,
    snapshot: list[dict[str, Any]],
    backup_dir: Path,
    run_id: str,
) -> str:
    """Save the pre-rerun CURRENT/ARCHIVED rows plus any CURRENT/ARCHIVED row listed now."""
    now = [r for r in list_user_playbooks.fn(settings, agent_version) if r["status"] != "pending"]
    seen = {r["user_playbook_id"] for r in snapshot}
    rows = snapshot + [r for r in now if r["user_playbook_id"] not in seen]
    path = backup_path(backup_dir, f"user-playbooks-{agent_version}", settings.url, run_id)
    doc = backup_document(
        "user_playbooks", settings.url, rows, flow_run_id=run_id, agent_version=agent_version
    )
    write_backup(path, doc)
    get_run_logger().info("Backed up %d user playbooks to %s", len(rows), path)
    return str(path.resolve())


def way_back(agent_version: str, stranded: list[str], backup: str | None) -> str:
    """What an operator can do when users were left without a CURRENT playbook (H6)."""
    if not stranded:
        return "No user lost their CURRENT playbook."
    return (
        f"{len(stranded)} user(s) have no CURRENT playbook now (their rows were tombstoned "
        f"as 'merged' by the rerun, H6): {', '.join(stranded)}. Ways back: (1) accept the "
        f"candidate anyway: ReflexioClient(settings).upgrade_user_playbooks("
        f"'{agent_version}') promotes the PENDING rows; (2) fix the cause and rerun this "
        f"flow (the rerun clears the PENDING rows of '{agent_version}' first); (3) the "
        f"pre-rerun rows are saved in {backup or 'no backup file'} (the server cannot "
        "un-merge them in place)."
    )


def _regenerate(
    params: PlaybookRegenerationParams, settings: ReflexioSettings, summary: RunSummary
) -> State:
    av = params.agent_version
    prefix = artifact_prefix(settings, av)
    stall, note = check_stall(settings, params.notification_block)
    if stall is not None:
        summary.decision = f"{stall.message} ({note})"
        return stalled(summary.decision)

    refuse_if_operation_running(settings, SERVICE)
    live = list_user_playbooks(settings, av)
    stale = [r for r in live if r["status"] == "pending"]
    if stale:
        if not params.discard_stale_pending:
            raise Refused(
                stale_pending_message(
                    len(stale), f"user playbooks of {av}", "discard_stale_pending"
                )
            )
        deleted = delete_user_playbooks(settings, [r["user_playbook_id"] for r in stale])
        summary.note(f"Deleted {deleted} stale PENDING user playbook(s).")
        live = [r for r in live if r["status"] != "pending"]
    snapshot = live
    baseline = [r for r in snapshot if r["status"] is None]
    if params.sources:
        baseline = [r for r in baseline if r.get("source") in params.sources]
    summary.counts_before = playbook_counts_of(snapshot).as_dict()

    for source in params.sources or [None]:
        operation_id = start_playbook_rerun(
            settings, av, source, params.start_time, params.end_time
        )
        status = wait_for_operation(
            settings, SERVICE, operation_id, params.operation_timeout_s, f"{prefix}-progress"
        )
        summary.note(
            f"rerun{f' of source {source}' if source else ''} ({operation_id}): "
            f"{status.status}, {status.processed_users}/{status.total_users} users, "
            f"{status.failed_users} failed."
        )
        stall = infer_stall(status, SERVICE)
        if stall is not None or status.status != "completed":
            now = list_user_playbooks(settings, av)
            stranded = users_without_current(now, users_of(baseline))
            if stall is not None:
                note = report_inferred_stall(settings, stall, params.notification_block)
                head = f"{stall.message} ({note})"
            else:
                head = describe_failed_operation(status)
            summary.decision = f"{head} Nothing was upgraded. {way_back(av, stranded, None)}"
            return (
                stalled(summary.decision) if stall is not None else Failed(message=summary.decision)
            )
    clear_inferred_stall(settings)

    now = list_user_playbooks(settings, av)
    candidate = [r for r in now if r["status"] == "pending"]
    if not candidate and not baseline:
        summary.decision = "No user playbooks before or after the rerun; nothing to do."
        return Completed(message=summary.decision)

    report, blocked = gate_step(
        settings, params, summary, candidate, baseline, "playbooks", prefix, agent_version=av
    )
    verdict = report.verdict
    path = backup_playbooks(settings, av, snapshot, params.backup_dir, _run_id())
    summary.backup_path = path
    if blocked or params.dry_run:
        stranded = users_without_current(now, users_of(baseline))
        what = (
            f"Gate verdict {verdict.value.upper()}: not upgraded."
            if blocked
            else f"Dry run: gate verdict {verdict.value}; not upgraded."
        )
        summary.decision = (
            f"{what} The candidate's {len(candidate)} PENDING row(s) are left in place. "
            f"{way_back(av, stranded, path)}"
        )
        summary.extra["users without CURRENT playbook"] = ", ".join(stranded) or "none"
        return Failed(message=summary.decision) if blocked else Completed(message=summary.decision)

    current_now = [r for r in now if r["status"] is None]
    expected = Counts(current=len(candidate), pending=0, archived=len(current_now))
    result = upgrade_user_playbooks(settings, av, len(candidate))
    summary.note(f"Upgrade: {result.get('message')}")
    try:
        measured = playbook_counts_of(list_user_playbooks(settings, av))
        summary.counts_after = measured.as_dict()
        verification = verify_upgrade(
            Counts(expected.current, 0, measured.archived),
            measured,
            len(candidate),
            result.get("user_playbooks_promoted"),
        )
        check_verification(verification)
    except Exception as exc:
        reason = str(exc)
        try:
            done = downgrade_user_playbooks(settings, av)
            rolled = f"downgrade_user_playbooks('{av}'): {done.get('message')}"
        except ReflexioError as down_exc:
            rolled = (
                f"downgrade_user_playbooks('{av}') could not roll back ({down_exc}); the "
                f"upgraded rows stay CURRENT. Pre-rerun rows: {path}"
            )
        summary.counts_after = playbook_counts_of(list_user_playbooks(settings, av)).as_dict()
        events.emit(events.ROLLED_BACK, settings.url, kind="playbooks", reason=reason[:300])
        summary.decision = f"Upgrade rolled back after: {reason}. Rollback: {rolled}."
        return Failed(message=summary.decision)
    events.emit(
        events.UPGRADED,
        settings.url,
        kind="playbooks",
        agent_version=av,
        promoted=len(candidate),
        backup=path,
    )
    summary.decision = (
        f"Upgraded: {len(candidate)} user playbook(s) of {av} promoted, counts verified, "
        f"gate {verdict.value}. Backup: {path}."
    )
    if params.aggregate:
        try:
            message = run_playbook_aggregation(settings, av)
        except ReflexioError as exc:
            summary.extra["aggregation"] = f"FAILED: {exc}"
            summary.decision += f" Aggregation failed: {exc}. Run it again."
            return Failed(message=summary.decision)
        summary.extra["aggregation"] = message
        summary.decision += f" Aggregation: {message}"
    if params.notify_on_pass:
        try:
            send_notification(
                params.notification_block, f"Reflexio playbooks {av} regenerated", summary.decision
            )
        except NotificationFailed as exc:
            summary.note(str(exc))
    return Completed(message=summary.decision)


DEFAULT_PARAMS = PlaybookRegenerationParams()
"""The form's defaults (safe: only_affected_users, no discard, no dry run)."""


@flow(name="playbook-regeneration", validate_parameters=True)
def playbook_regeneration(params: PlaybookRegenerationParams = DEFAULT_PARAMS) -> State:
    """Regenerate one agent_version's user playbooks safely, then aggregate.

    dry_run: rerun + gate + backup, no upgrade, no aggregation. Unlike profiles, the PENDING
    rows are kept: the rerun has already tombstoned the CURRENT rows it re-derived (H6), and
    deleting the candidate would leave those users with nothing to upgrade to.
    """
    settings = params.settings()
    summary = RunSummary(
        title=f"Playbook regeneration ({params.agent_version})", server=settings.url
    )
    return run_regeneration(
        settings,
        summary,
        params.lock_timeout_s,
        f"{artifact_prefix(settings, params.agent_version)}-summary",
        lambda: _regenerate(params, settings, summary),
    )
