"""Profile regeneration: stall check -> guard -> rerun -> gate -> backup -> upgrade -> verify.

End states (the flow's final Prefect state; `prefect deployment run --watch` and
`python -m flows.main_job` exit 1 on Failed):

- Completed: upgraded and verified; or dry run (gate ran, PENDING rows it created deleted).
- Failed "Learning is stalled: ...": the server's stall flag, or a stall inferred from the
  rerun (H2/H7). Nothing is upgraded; the stall is notified once.
- Failed "Refusing ...": an operation in progress, stale PENDING rows, or the lock is held.
- Failed "Gate verdict FAIL ...": the candidate's PENDING rows are deleted, CURRENT untouched.
- Failed "... rolled back ...": something after the upgrade failed; the upgrade was undone
  with downgrade, the promoted rows deleted and the ARCHIVED rows the upgrade deleted (H1)
  re-created from the backup; the summary says whether the data then equals the backup.

Rollback is an explicit try/except around everything after the upgrade rather than a
Prefect transaction: Prefect's on_rollback hook runs after the failure with its own errors
only logged, so the flow could neither verify the rollback nor report its outcome in its
final state. Here the rollback's result decides the message the run ends with.
"""

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.states import Completed, Failed, State

from flows._common import Refused, gate_step, run_regeneration, stalled
from flows.params import RegenerationParams
from reflexio_api import ReflexioError, ReflexioSettings
from tasks import events
from tasks.domain import (
    PROFILE_KEYS,
    backup_document,
    backup_path,
    check_verification,
    comparable,
    describe_failed_operation,
    expected_after_upgrade,
    infer_stall,
    server_slug,
    stale_pending_message,
    verify_upgrade,
    write_backup,
)
from tasks.notify import NotificationFailed, send_notification
from tasks.report import RunSummary
from tasks.server import (
    add_profiles,
    delete_profiles,
    downgrade_profiles,
    list_profiles,
    profile_counts,
    refuse_if_operation_running,
    start_profile_rerun,
    upgrade_profiles,
    wait_for_operation,
)
from tasks.stall import check_stall, clear_inferred_stall, report_inferred_stall

SERVICE = "profile_generation"


def artifact_prefix(settings: ReflexioSettings) -> str:
    """Artifact keys of this flow for this server, e.g. 'profile-regen-127-0-0-1-8081'."""
    return f"profile-regen-{server_slug(settings.url)}"


def _run_id() -> str:
    try:
        return str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:
        return "local"


@task(name="backup-profiles", cache_policy=NO_CACHE)
def backup_profiles(settings: ReflexioSettings, backup_dir: Path, run_id: str) -> tuple[str, list]:
    """Save every CURRENT and ARCHIVED profile (what an upgrade archives or deletes)."""
    rows = list_profiles.fn(settings, "current") + list_profiles.fn(settings, "archived")
    path = backup_path(backup_dir, "profiles", settings.url, run_id)
    write_backup(path, backup_document("profiles", settings.url, rows, flow_run_id=run_id))
    get_run_logger().info("Backed up %d profiles to %s", len(rows), path)
    return str(path.resolve()), rows


def rollback_profiles(
    settings: ReflexioSettings,
    only_affected_users: bool,
    promoted_ids: set[str],
    backup_rows: list[dict[str, Any]],
) -> tuple[bool, str]:
    """Undo an upgrade: downgrade, delete the promoted rows, re-create what the upgrade
    deleted (old ARCHIVED, H1) from the backup. Returns (data equals backup, what was done)."""
    done = []
    result = downgrade_profiles(settings, only_affected_users)
    done.append(f"downgrade: {result.get('message') or result}")
    now = list_profiles(settings, "current") + list_profiles(settings, "archived")
    now += list_profiles(settings, "pending")
    stray = [r["profile_id"] for r in now if r["profile_id"] in promoted_ids]
    done.append(f"deleted {delete_profiles(settings, stray)} promoted row(s)")
    present = {r["profile_id"] for r in now}
    missing = [r for r in backup_rows if r["profile_id"] not in present]
    if missing:
        done.append(f"re-created {add_profiles(settings, missing)} row(s) from the backup")
    after = list_profiles(settings, "current") + list_profiles(settings, "archived")
    equal = comparable(after, PROFILE_KEYS) == comparable(backup_rows, PROFILE_KEYS)
    done.append("data equals the backup" if equal else "data DIFFERS from the backup")
    return equal, "; ".join(done)


def _discard(settings: ReflexioSettings, rows: list[dict[str, Any]], summary: RunSummary) -> None:
    deleted = delete_profiles(settings, [r["profile_id"] for r in rows])
    summary.note(f"Deleted the {deleted} PENDING profile(s) this run created (H5).")


def _regenerate(params: RegenerationParams, settings: ReflexioSettings, summary: RunSummary):
    prefix = artifact_prefix(settings)
    stall, note = check_stall(settings, params.notification_block)
    if stall is not None:
        summary.decision = f"{stall.message} ({note})"
        return stalled(summary.decision)

    refuse_if_operation_running(settings, SERVICE)
    stale = list_profiles(settings, "pending")
    if stale:
        if not params.discard_stale_pending:
            raise Refused(stale_pending_message(len(stale), "profiles", "discard_stale_pending"))
        deleted = delete_profiles(settings, [r["profile_id"] for r in stale])
        summary.note(f"Deleted {deleted} stale PENDING profile(s) left by an earlier rerun.")

    before = profile_counts(settings)
    summary.counts_before = before.as_dict()

    for source in params.sources or [None]:
        operation_id = start_profile_rerun(settings, source, params.start_time, params.end_time)
        status = wait_for_operation(
            settings, SERVICE, operation_id, params.operation_timeout_s, f"{prefix}-progress"
        )
        label = f"rerun{f' of source {source}' if source else ''} ({operation_id})"
        summary.note(
            f"{label}: {status.status}, {status.processed_users}/{status.total_users} users, "
            f"stats {status.stats}."
        )
        stall = infer_stall(status, SERVICE)
        if stall is not None or status.status != "completed":
            _discard(settings, list_profiles(settings, "pending"), summary)
            if stall is not None:
                note = report_inferred_stall(settings, stall, params.notification_block)
                summary.decision = f"{stall.message} ({note}) Nothing was upgraded."
                return stalled(summary.decision)
            summary.decision = describe_failed_operation(status) + " Nothing was upgraded."
            return Failed(message=summary.decision)
    clear_inferred_stall(settings)

    candidate = list_profiles(settings, "pending")
    baseline = list_profiles(settings, "current")
    if params.sources:
        baseline = [r for r in baseline if r.get("source") in params.sources]
    if not candidate and not baseline:
        summary.decision = "No profiles before or after the rerun; nothing to do."
        return Completed(message=summary.decision)

    report, blocked = gate_step(settings, params, summary, candidate, baseline, "profiles", prefix)
    verdict = report.verdict
    if blocked:
        _discard(settings, candidate, summary)
        summary.decision = (
            f"Gate verdict {verdict.value.upper()}: not upgraded; CURRENT untouched. "
            f"{report.summary_sentence()}"
        )
        return Failed(message=summary.decision)
    if params.dry_run:
        _discard(settings, candidate, summary)
        summary.decision = (
            f"Dry run: gate verdict {verdict.value}; the candidate's PENDING rows were "
            "deleted and nothing was upgraded."
        )
        return Completed(message=summary.decision)

    path, backup_rows = backup_profiles(settings, params.backup_dir, _run_id())
    summary.backup_path = path
    current_rows = [r for r in backup_rows if r.get("status") is None]
    expected = expected_after_upgrade(current_rows, candidate, params.only_affected_users)
    result = upgrade_profiles(settings, params.only_affected_users, len(candidate))
    summary.note(f"Upgrade: {result.get('message')}")
    try:
        measured = profile_counts(settings)
        summary.counts_after = measured.as_dict()
        verification = verify_upgrade(
            expected, measured, len(candidate), result.get("profiles_promoted")
        )
        check_verification(verification)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ReflexioError | RuntimeError) else repr(exc)
        get_run_logger().error("After the upgrade: %s. Rolling back.", reason)
        _equal, what = rollback_profiles(
            settings,
            params.only_affected_users,
            {r["profile_id"] for r in candidate},
            backup_rows,
        )
        summary.counts_after = profile_counts(settings).as_dict()
        events.emit(events.ROLLED_BACK, settings.url, kind="profiles", reason=reason[:300])
        summary.decision = f"Upgrade rolled back after: {reason}. Rollback: {what}. Backup: {path}."
        return Failed(message=summary.decision)

    events.emit(
        events.UPGRADED,
        settings.url,
        kind="profiles",
        promoted=len(candidate),
        backup=path,
        counts_after=measured.as_dict(),
    )
    summary.decision = (
        f"Upgraded: {len(candidate)} profile(s) promoted, counts verified "
        f"({measured.as_dict()}), gate {verdict.value}. Backup: {path}."
    )
    if params.notify_on_pass:
        try:
            send_notification(
                params.notification_block, "Reflexio profiles regenerated", summary.decision
            )
        except NotificationFailed as exc:
            summary.note(str(exc))
    return Completed(message=summary.decision)


DEFAULT_PARAMS = RegenerationParams()
"""The form's defaults (safe: only_affected_users, no discard, no dry run)."""


@flow(name="profile-regeneration", validate_parameters=True)
def profile_regeneration(params: RegenerationParams = DEFAULT_PARAMS) -> State:
    """Regenerate profiles safely (see the module docstring for every end state).

    dry_run: rerun + gate, then the PENDING rows this run created are deleted; no backup, no
    upgrade. A rerun always writes PENDING rows, so "dry" means "leaves no trace", not
    "writes nothing".
    """
    settings = params.settings()
    summary = RunSummary(title="Profile regeneration", server=settings.url)
    return run_regeneration(
        settings,
        summary,
        params.lock_timeout_s,
        f"{artifact_prefix(settings)}-summary",
        lambda: _regenerate(params, settings, summary),
    )
