"""Thin Prefect tasks around the Reflexio client: one server call (or one wait) each.

Each task builds its own client from ReflexioSettings (httpx timeouts come from there),
retries transient faults only (tasks/retry.py) and never caches (the server's state is the
input that matters). Rows are returned as plain dicts (`model_dump()`), ready for the gate
and for backups.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any, Literal, TypeVar
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from core.state import Counts
from core.upgrade import UpgradeUndetermined, resolve
from reflexio_api import (
    OperationTimeout,
    ReflexioClient,
    ReflexioSettings,
    TransientError,
    UnexpectedPayload,
)
from reflexio_api.client import STALE_PROBE_S
from reflexio_api.models import OperationStarted, OperationStatus, ServiceName, StallState
from tasks.retry import MAX_RETRY_AFTER_S, honour_retry_after, retry_options

READ = {"cache_policy": NO_CACHE, "timeout_seconds": 300, **retry_options()}
WRITE = {"cache_policy": NO_CACHE, "timeout_seconds": 300, **retry_options(writes=True)}
"""Idempotent reads (and deletes by id) retry every transient fault; other writes only
those that surely did not reach the server (see tasks/retry.py)."""


T = TypeVar("T")


class OperationRunning(RuntimeError):
    """The server is already running a generation of that service (H4: don't stack on it)."""


def _client(settings: ReflexioSettings) -> ReflexioClient:
    return ReflexioClient(settings)


# --- reads ---------------------------------------------------------------------------------


@task(name="read-stall-state", **READ)
def read_stall_state(
    settings: ReflexioSettings, retry_after_cap_s: float = MAX_RETRY_AFTER_S
) -> StallState:
    """GET /stall_state (a Retry-After is slept up to `retry_after_cap_s`)."""
    with honour_retry_after(retry_after_cap_s), _client(settings) as client:
        return client.get_stall_state()


@task(name="mark-stall-notified", **READ)
def mark_stall_notified(
    settings: ReflexioSettings, retry_after_cap_s: float = MAX_RETRY_AFTER_S
) -> bool:
    """POST /stall_state/notified (idempotent: it only sets a flag; a Retry-After is slept
    up to `retry_after_cap_s`)."""
    with honour_retry_after(retry_after_cap_s), _client(settings) as client:
        return client.mark_stall_notified().notified_in_cc


@task(name="read-operation-status", **READ)
def read_operation_status(
    settings: ReflexioSettings, service: ServiceName
) -> OperationStatus | None:
    """The service's status slot (None when no operation ever ran)."""
    with honour_retry_after(), _client(settings) as client:
        return client.get_operation_status(service)


RUNNING_CHECK = {**READ, "timeout_seconds": READ["timeout_seconds"] + STALE_PROBE_S}
"""A read that may watch a stale-check failure for STALE_PROBE_S (H19): its timeout leaves
the reads their own 300 s beside the probe (at 300 s alone, a dead slot's probe would run
into the task's timeout, and every retry would probe again)."""


@task(name="find-running-operation", **RUNNING_CHECK)
def find_running_operation(
    settings: ReflexioSettings, service: ServiceName
) -> OperationStatus | None:
    """The `service` operation running on the server, if any (one the server's stale check
    marked failed counts while it progresses, H19: ReflexioClient.running_operation)."""
    with honour_retry_after(), _client(settings) as client:
        return client.running_operation(service)


@task(name="refuse-if-operation-running", **RUNNING_CHECK)
def refuse_if_operation_running(settings: ReflexioSettings, service: ServiceName) -> None:
    """Raise OperationRunning when a `service` operation runs on the server."""
    with honour_retry_after(), _client(settings) as client:
        status = client.running_operation(service)
    if status is not None:
        stale = (
            " (the server's stale check marked it failed, but it is still working: H19)"
            if status.auto_recovered
            else ""
        )
        raise OperationRunning(
            f"Refusing to start: a {service} operation (id {status.operation_id}) is in "
            f"progress on {settings.url} ({status.processed_users}/{status.total_users} "
            f"users){stale}. Upgrading or rerunning now would strand users (H4). Wait for "
            "it to finish or cancel it, then run again."
        )


CANCEL_WAIT_S = 120.0
"""How long a cancelled rerun is waited on to stop (the server checks between users)."""


@task(name="cancel-rerun", **WRITE)
def cancel_rerun(settings: ReflexioSettings, service: ServiceName, operation_id: str) -> str:
    """Ask the server to stop a running rerun and wait until it has; returns what happened."""
    with honour_retry_after(), _client(settings) as client:
        asked = service in client.cancel_operation(service).cancelled_services
        try:
            status = client.wait_for_operation(service, operation_id, CANCEL_WAIT_S)
        except OperationTimeout:
            if not asked:  # 0.2.32 cancels only IN_PROGRESS slots, not one it failed (H19)
                return (
                    "the server would not cancel it (its slot no longer says in progress, "
                    f"H19) and it was still running after {CANCEL_WAIT_S:g} s"
                )
            return f"it was asked to stop and was still running after {CANCEL_WAIT_S:g} s"
    if not asked:
        return f"the server would not cancel it; it ended {status.status} by itself"
    return f"it was cancelled and ended {status.status}"


@task(name="list-profiles", **READ)
def list_profiles(
    settings: ReflexioSettings, status: Literal["current", "pending", "archived"]
) -> list[dict[str, Any]]:
    """Every profile in one status, as dicts; `status` is stamped on rows that omit it."""
    with honour_retry_after(), _client(settings) as client:
        rows = client.list_profiles(status)
    stamped = None if status == "current" else status
    return [{**r.model_dump(), "status": r.status or stamped} for r in rows]


@task(name="profile-counts", **READ)
def profile_counts(settings: ReflexioSettings) -> Counts:
    """Profile counts by status (statistics endpoint; H3: never the reported counts)."""
    with honour_retry_after(), _client(settings) as client:
        stats = client.get_profile_statistics()
    return Counts(stats.current_count, stats.pending_count, stats.archived_count)


@task(name="list-user-playbooks", **READ)
def list_user_playbooks(
    settings: ReflexioSettings,
    agent_version: str,
    status: Literal["current", "pending", "archived"] | None = None,
) -> list[dict[str, Any]]:
    """User playbooks of one agent_version (no status: every live status), as dicts."""
    with honour_retry_after(), _client(settings) as client:
        rows = client.list_user_playbooks(status=status, agent_version=agent_version)
    stamped = None if status in (None, "current") else status
    return [{**r.model_dump(), "status": r.status or stamped} for r in rows]


def playbook_counts_of(rows: list[dict[str, Any]]) -> Counts:
    """Counts of user playbook rows listed with no status filter."""
    statuses = [r.get("status") for r in rows]
    return Counts(
        current=sum(s in (None, "current") for s in statuses),
        pending=statuses.count("pending"),
        archived=statuses.count("archived"),
    )


# --- reruns --------------------------------------------------------------------------------


START_CHECKS = 3
"""How many times the operation slot is read after a rerun's answer was lost ..."""
START_CHECK_INTERVAL_S = 2.0
"""... and how far apart: a request still on its way gets time to arrive."""


def start_or_find(
    client: ReflexioClient, service: ServiceName, send: Callable[[], OperationStarted]
) -> str:
    """Send a rerun request; return the operation id. When its answer is lost after it may
    have reached the server (a reset, a timeout, an unreadable body), the service's status
    slot tells: an operation other than the one there before the request is the one it
    started (the server's lock keeps our other writers out), and is waited on like any;
    the same one in START_CHECKS reads means it did not start, a TransientError the task's
    retry may send again. Never a second rerun on top of one that started (H5)."""
    try:
        with honour_retry_after():
            before = client.get_operation_status(service)
    except TransientError as exc:  # nothing sent yet: the task's retry may start over
        raise TransientError(str(exc), maybe_applied=False) from None
    before_id = before.operation_id if before else None
    try:
        with honour_retry_after():
            return send().operation_id
    except (TransientError, UnexpectedPayload) as exc:
        if not _maybe_applied(exc):
            raise
        lost = exc
    for check in range(START_CHECKS):
        if check:
            time.sleep(START_CHECK_INTERVAL_S)
        try:
            now = client.get_operation_status(service)
        except TransientError:  # unknown: the run stops rather than send it twice
            raise lost from None
        if now is not None and now.operation_id and now.operation_id != before_id:
            get_run_logger().warning(
                "%s rerun: the answer was lost (%s), but the server started operation %s",
                service,
                lost,
                now.operation_id,
            )
            return now.operation_id
    raise TransientError(
        f"The {service} rerun's answer was lost ({lost}) and the server's status slot still "
        f"showed the operation from before it in {START_CHECKS} reads: it did not start.",
        maybe_applied=False,
    )


@task(name="start-profile-rerun", **WRITE)
def start_profile_rerun(
    settings: ReflexioSettings,
    source: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
) -> str:
    """Start a background profile rerun; return its operation id (see start_or_find)."""
    with _client(settings) as client:
        return start_or_find(
            client,
            "profile_generation",
            lambda: client.rerun_profile_generation(
                source=source, start_time=start_time, end_time=end_time
            ),
        )


@task(name="start-playbook-rerun", **WRITE)
def start_playbook_rerun(
    settings: ReflexioSettings,
    agent_version: str,
    source: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
) -> str:
    """Start a background playbook rerun for one agent_version; return its operation id
    (see start_or_find)."""
    with _client(settings) as client:
        return start_or_find(
            client,
            "playbook_generation",
            lambda: client.rerun_playbook_generation(
                agent_version, source=source, start_time=start_time, end_time=end_time
            ),
        )


@task(name="wait-for-operation", cache_policy=NO_CACHE, retries=0)
def wait_for_operation(
    settings: ReflexioSettings,
    service: ServiceName,
    operation_id: str,
    timeout_s: float,
    artifact_key: str,
) -> OperationStatus:
    """Poll OUR operation (matched by id) to its end, with a progress artifact.

    Transient polling errors are tolerated by the client until the deadline, so this task
    itself is not retried (a retry would only restart the clock).
    """
    artifact_id: UUID = create_progress_artifact(
        0.0, key=artifact_key, description=f"{service} {operation_id}: starting"
    )
    last: list[float] = [-1.0]

    def on_progress(status: OperationStatus) -> None:
        ended = status.is_terminal and not status.auto_recovered  # H19: may still run
        pct = 100.0 if ended else round(status.progress_percentage, 1)
        if pct != last[0]:
            last[0] = pct
            update_progress_artifact(
                artifact_id,
                pct,
                description=(
                    f"{service} {operation_id}: {status.status}, "
                    f"{status.processed_users}/{status.total_users} users"
                ),
            )

    started = time.monotonic()
    with _client(settings) as client:
        status = client.wait_for_operation(service, operation_id, timeout_s, on_progress)
    get_run_logger().info(
        "%s %s ended %s after %.1f s: %s/%s users processed, %s failed, stats %s",
        service,
        operation_id,
        status.status,
        time.monotonic() - started,
        status.processed_users,
        status.total_users,
        status.failed_users,
        status.stats,
    )
    return status


# --- deletes (idempotent by id) -----------------------------------------------------------

DELETE_BATCH = 5_000
"""Ids per delete call: the client refuses more than MAX_IDS_PER_DELETE (10,000) in one
request, and half of that keeps each call well within the read timeout (the prune uses
1,000, core/prune.py, measured at size). Every delete of an id list that can grow with the
data goes through `delete_profiles_in_batches` / `delete_user_playbooks_in_batches`."""


@task(name="delete-profiles", **READ)
def delete_profiles(settings: ReflexioSettings, profile_ids: list[str]) -> int:
    """Delete profiles by id (idempotent: a repeat deletes nothing more)."""
    if not profile_ids:
        return 0
    with honour_retry_after(), _client(settings) as client:
        return client.delete_profiles(profile_ids).deleted_count


@task(name="delete-user-playbooks", **READ)
def delete_user_playbooks(settings: ReflexioSettings, ids: list[int]) -> int:
    """Delete user playbooks by id (idempotent)."""
    if not ids:
        return 0
    with honour_retry_after(), _client(settings) as client:
        return client.delete_user_playbooks(ids).deleted_count


def delete_profiles_in_batches(settings: ReflexioSettings, profile_ids: Iterable[str]) -> int:
    """Delete any number of profiles by id, DELETE_BATCH ids per call (one task run each;
    a retry repeats only its own batch, and a repeat deletes nothing more)."""
    return sum(delete_profiles(settings, batch) for batch in in_batches(profile_ids, DELETE_BATCH))


def delete_user_playbooks_in_batches(settings: ReflexioSettings, ids: Iterable[int]) -> int:
    """Delete any number of user playbooks by id, DELETE_BATCH ids per call."""
    return sum(delete_user_playbooks(settings, batch) for batch in in_batches(ids, DELETE_BATCH))


@task(name="add-user-playbooks", **WRITE)
def add_user_playbooks(settings: ReflexioSettings, rows: list[dict[str, Any]]) -> int:
    """Re-create user playbooks as CURRENT rows (new ids)."""
    if not rows:
        return 0
    with honour_retry_after(), _client(settings) as client:
        return client.add_user_playbooks(rows).added_count


# --- promotion (not idempotent) -----------------------------------------------------------


def _maybe_applied(exc: TransientError | UnexpectedPayload) -> bool:
    """An unreadable answer came after the server acted; a transient fault says itself."""
    return isinstance(exc, UnexpectedPayload) or exc.maybe_applied


SETTLE_INTERVAL_S = 5.0
SETTLE_TIMEOUT_S = 1800.0
"""How often, and how long, the state is read after an upgrade's answer was lost. The
server answers 504 after 60 s while a large upgrade goes on (measured: an upgrade over
1M ARCHIVED rows runs for well over 5 minutes)."""


def settle_upgrade(
    read_pending: Callable[[], int], pending_before: int, what: str
) -> dict[str, Any]:
    """After a lost upgrade answer: read PENDING until core.upgrade.resolve tells. Applied:
    the upgrade's result with unknown counts. Not applied: a TransientError that says it
    surely did not apply, which the task's retry may send again. Still running after
    SETTLE_TIMEOUT_S: UpgradeUndetermined (never sent again, never rolled back)."""
    reads: list[int | None] = []
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            reads.append(read_pending())
        except TransientError:
            reads.append(None)
        resolution = resolve(pending_before, reads)
        if resolution == "applied":
            get_run_logger().warning("%s: answer lost, but the state shows it applied", what)
            return {"promoted": None, "message": "applied (answer lost)"}
        if resolution == "not_applied":
            raise TransientError(
                f"{what}: the answer was lost and {pending_before} row(s) were still PENDING "
                f"in {len(reads)} reads {SETTLE_INTERVAL_S:g} s apart: it did not apply.",
                maybe_applied=False,
            )
        time.sleep(SETTLE_INTERVAL_S)
    raise UpgradeUndetermined(
        f"{what}: the answer was lost and the server's state did not settle in "
        f"{SETTLE_TIMEOUT_S:g} s (PENDING reads: {reads[-5:]}). It is not sent again and "
        "nothing is rolled back while it may still be running. When the server answers "
        "again: PENDING 0 means it applied (compare the rows with the backup); otherwise "
        "restore from the backup."
    )


@task(name="upgrade-profiles", **WRITE)
def upgrade_profiles(
    settings: ReflexioSettings, only_affected_users: bool, pending_before: int
) -> dict[str, Any]:
    """PENDING -> CURRENT. An ambiguous answer (a fault that may have applied, or an
    unreadable body) is resolved by reading the state (settle_upgrade), never by sending
    the upgrade again."""
    with _client(settings) as client:
        try:
            with honour_retry_after():
                return client.upgrade_profiles(only_affected_users).model_dump()
        except (TransientError, UnexpectedPayload) as exc:
            if not _maybe_applied(exc):
                raise
            return settle_upgrade(
                lambda: client.get_profile_statistics().pending_count,
                pending_before,
                "upgrade_all_profiles",
            )


@task(name="downgrade-profiles", **WRITE)
def downgrade_profiles(settings: ReflexioSettings, only_affected_users: bool) -> dict[str, Any]:
    """CURRENT -> PENDING, ARCHIVED -> CURRENT (the rollback of an upgrade)."""
    with honour_retry_after(), _client(settings) as client:
        return client.downgrade_profiles(only_affected_users).model_dump()


@task(name="upgrade-user-playbooks", **WRITE)
def upgrade_user_playbooks(
    settings: ReflexioSettings, agent_version: str, pending_before: int
) -> dict[str, Any]:
    """PENDING user playbooks of one agent_version -> CURRENT (see upgrade_profiles)."""
    with _client(settings) as client:
        try:
            with honour_retry_after():
                return client.upgrade_user_playbooks(agent_version).model_dump()
        except (TransientError, UnexpectedPayload) as exc:
            if not _maybe_applied(exc):
                raise
            return settle_upgrade(
                lambda: len(client.list_user_playbooks("pending", agent_version=agent_version)),
                pending_before,
                f"upgrade_all_user_playbooks({agent_version})",
            )


@task(name="downgrade-user-playbooks", **WRITE)
def downgrade_user_playbooks(settings: ReflexioSettings, agent_version: str) -> dict[str, Any]:
    """Roll back the user playbooks of one agent_version."""
    with honour_retry_after(), _client(settings) as client:
        return client.downgrade_user_playbooks(agent_version).model_dump()


@task(name="run-playbook-aggregation", **WRITE)
def run_playbook_aggregation(settings: ReflexioSettings, agent_version: str) -> str:
    """Aggregate user playbooks into agent playbooks; returns the server's message."""
    with honour_retry_after(), _client(settings) as client:
        return client.run_playbook_aggregation(agent_version).message


# --- restore -------------------------------------------------------------------------------

RECREATE_BATCH = 200
"""Rows per re-create call: the server embeds every re-created row (about 30 ms a row with
the stand-in LLM), and one call must end within the read timeout."""


def in_batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items, read lazily from `items`."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@task(name="add-profiles", **READ)
def add_profiles(settings: ReflexioSettings, rows: list[dict[str, Any]]) -> int:
    """Re-create profile rows with their ids, statuses and contents (idempotent by id)."""
    if not rows:
        return 0
    with honour_retry_after(), _client(settings) as client:
        return client.add_user_profiles(rows).added_count
