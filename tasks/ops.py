"""The regeneration engine's effects as Prefect tasks, for one kind on one server.

`PrefectOps` is the `core.regeneration.ServerOps` the flows use: every method is one task (or
a few batched ones) from tasks/, so each step shows in the run's task list with its
retries; the approval is not a task (a flow run pauses itself, tasks/approval.py).
Listings go through `read_rows`, which streams the complete, proven listing of each
status into the backup, the gate's frames and the id snapshot: for profiles a snapshot plus
the delta of what changed while it was read (core/delta.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from core.approval import Approval
from core.backup_store import BackupStore
from core.delta import DeltaBegins
from core.kinds import Kind, Status
from core.listing import check_delta_against_statistics
from core.sinks import Page, Reading, ReadRequest, consume
from core.stall import Stall
from core.state import Counts
from gate import GatePolicy, GateReport, RunScope
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.models import OperationStatus, ProfileStatistics, row_dict
from reflexio_api.paging import PAGE_SIZE
from tasks import events
from tasks.approval import ask_operator
from tasks.backups import locate_file, open_location
from tasks.gate import run_gate
from tasks.kind_calls import KindCalls, calls_for
from tasks.notify import send_notification
from tasks.retry import honour_retry_after, retry_options
from tasks.server import (
    RECREATE_BATCH,
    cancel_rerun,
    find_running_operation,
    in_batches,
    refuse_if_operation_running,
    wait_for_operation,
)
from tasks.stall import check_stall, clear_inferred_stall, report_inferred_stall

PAGES_PER_STATUS = 4
MAX_PAGE = 250_000
"""Every listing request makes the server sort the whole status (no index on the
timestamp), so a large status is read in about PAGES_PER_STATUS pages, at most MAX_PAGE
rows each (memory), never fewer than the client's PAGE_SIZE."""


def page_size(rows: int) -> int:
    """Rows per listing page for a status of about `rows` rows."""
    return max(PAGE_SIZE, min(MAX_PAGE, rows // PAGES_PER_STATUS))


def _stamped(rows: Iterable[Any], status: Status | None) -> Page:
    """Rows as plain dicts with their status stamped (CURRENT: None; a listing of every
    status, None, leaves each row's own)."""
    stamped = None if status == "current" else status
    return [{**row_dict(r), "status": r.status or stamped} for r in rows]


def _pages(
    client: ReflexioClient, kind: Kind, request: ReadRequest, counts: Counts | None
) -> Iterator[Page]:
    """Pages of every requested status, as plain dicts with their status stamped."""
    calls = calls_for(kind, client.settings)
    for status in calls.listings(request.statuses):
        expected = getattr(counts, status) if counts is not None and status else None
        for page in calls.listed(client, status, page_size(expected or 0), expected):
            yield _stamped(page, status)


@dataclass
class _Pass:
    """One snapshot-plus-delta pass over profiles (core/delta.py): its pages, and the
    statistics it read between the snapshot and the delta."""

    client: ReflexioClient
    request: ReadRequest
    before: Counts
    after: Counts | None = None

    def pages(self) -> Iterator[Page]:
        since = self.request.delta_since
        assert since is not None
        for status in self.request.statuses:
            yield from self._walk(status, getattr(self.before, status), None)
        self.after = _counts(self.client.get_profile_statistics())
        yield DeltaBegins(self.client.server_second())
        for status in self.request.statuses:
            yield from self._walk(status, getattr(self.before, status), since)

    def _walk(self, status: Status, expected: int, since: int | None) -> Iterator[Page]:
        pages = self.client.iter_profiles(
            status,
            page_size=page_size(expected),
            expected_total=expected,
            start=since,
            tolerate_changes=True,
        )
        for page in pages:
            yield _stamped(page, status)


def _counts(stats: ProfileStatistics) -> Counts:
    return Counts(stats.current_count, stats.pending_count, stats.archived_count)


@task(name="read-rows", cache_policy=NO_CACHE, timeout_seconds=3600, **retry_options())
def read_rows(settings: ReflexioSettings, kind: Kind, request: ReadRequest) -> Reading:
    """One complete pass over the requested statuses into the request's sinks; a retry
    starts the pass (and its backup file) anew. See `read_with`."""
    with honour_retry_after(), ReflexioClient(settings) as client:
        return read_with(client, kind, request)


def read_with(client: ReflexioClient, kind: Kind, request: ReadRequest) -> Reading:
    """One complete pass with `client`. Profiles: a snapshot plus the delta of what changed
    since the pass began, checked against the statistics read between them (core/delta.py),
    so the pass holds on a busy server; ListingNotProven when rows are missing. User
    playbooks: the proven walk alone (the server keeps no counts of them)."""
    if not kind.counted_by_server:
        return consume(kind, _pages(client, kind, request, None), request)
    before = _counts(client.get_profile_statistics())
    started = client.server_second()
    request = replace(request, count_at=started, delta_since=started - request.delta_margin_s)
    one = _Pass(client, request, before)
    reading = consume(kind, one.pages(), request)
    assert reading.delta is not None and one.after is not None
    check_delta_against_statistics(
        kind.label, reading.delta.held, reading.delta.moved_out, one.after, request.statuses
    )
    return reading


@dataclass
class PrefectOps:
    """ServerOps for one kind on one server, every effect a Prefect task."""

    settings: ReflexioSettings
    kind: Kind
    notification_block: str
    before_write: Callable[[], None] = lambda: None
    """Called before every write: raises when the run may no longer write (its server lock
    was lost)."""

    @property
    def url(self) -> str:
        return self.settings.url

    @cached_property
    def calls(self) -> KindCalls:
        """The server calls of this kind."""
        return calls_for(self.kind, self.settings)

    def check_stall(self) -> tuple[Stall | None, str]:
        return check_stall(self.settings, self.notification_block)

    def refuse_if_running(self) -> None:
        refuse_if_operation_running(self.settings, self.kind.service)

    def running_operation(self) -> str | None:
        status = find_running_operation(self.settings, self.kind.service)
        return None if status is None else status.operation_id or ""

    def read(self, request: ReadRequest) -> Reading:
        # Quoted: Prefect would otherwise walk every id of the request's LiveRule (millions
        # at size) to find task inputs, and copy them while resolving the parameters.
        return read_rows(self.settings, self.kind, quote(request))

    def delete(self, ids: Collection[str]) -> int:
        self.before_write()
        return self.calls.delete(ids)

    def start_rerun(
        self, source: str | None, start_time: datetime | None, end_time: datetime | None
    ) -> str:
        self.before_write()
        return self.calls.start_rerun(source, start_time, end_time)

    def wait(self, operation_id: str, timeout_s: float, artifact_key: str) -> OperationStatus:
        return wait_for_operation(
            self.settings, self.kind.service, operation_id, timeout_s, artifact_key
        )

    def cancel_rerun(self, operation_id: str) -> str:
        return cancel_rerun(self.settings, self.kind.service, operation_id)

    def report_inferred_stall(self, stall: Stall) -> str:
        return report_inferred_stall(self.settings, stall, self.notification_block)

    def clear_inferred_stall(self) -> None:
        clear_inferred_stall(self.settings)

    def gate(
        self,
        candidate: pd.DataFrame,
        baseline: pd.DataFrame,
        policy: GatePolicy,
        artifact_prefix: str,
        dask_address: str | None,
        scope: RunScope | None,
    ) -> GateReport:
        return run_gate(
            candidate,
            baseline,
            policy,
            self.kind.gate_kind,
            artifact_prefix,
            dask_address,
            scope,
        )

    def upgrade(self, only_affected_users: bool, pending_before: int) -> dict[str, Any]:
        self.before_write()
        return self.calls.upgrade(only_affected_users, pending_before)

    def downgrade(self, only_affected_users: bool) -> dict[str, Any]:
        self.before_write()
        return self.calls.downgrade(only_affected_users)

    def recreate(self, rows: Iterable[dict[str, Any]]) -> int:
        self.before_write()
        return sum(self.calls.add(batch) for batch in in_batches(rows, RECREATE_BATCH))

    def aggregate(self) -> str:
        self.before_write()
        return self.calls.aggregate()

    def notify(self, subject: str, body: str) -> None:
        send_notification(self.notification_block, subject, body)

    def ask_approval(self, request_markdown: str, timeout_s: int) -> Approval:
        return ask_operator(request_markdown, timeout_s)

    def emit(self, event: str, **payload: Any) -> None:
        events.emit(event, self.url, **payload)

    def open_location(self, location: str | Path) -> BackupStore:
        return open_location(location)

    def locate_file(self, location: str) -> tuple[BackupStore, str]:
        return locate_file(location)
