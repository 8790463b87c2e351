"""Synchronous client of the Reflexio REST API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from reflexio_api import _requests as api
from reflexio_api._responses import transport_error
from reflexio_api.errors import IncompleteListing, TransientError
from reflexio_api.models import (
    AddRowsResult,
    AgentPlaybook,
    AggregationOperation,
    AggregationResult,
    BulkDeleteResult,
    CancelResult,
    ClearUserDataResult,
    ConfigWriteResult,
    Health,
    Interaction,
    ManualPlaybookGenerationResult,
    ManualProfileGenerationResult,
    OperationStarted,
    OperationStatus,
    PlaybookStatusName,
    Profile,
    ProfileDowngradeResult,
    ProfileStatistics,
    ProfileStatusName,
    ProfileUpgradeResult,
    PublishResult,
    ServiceName,
    StallNotified,
    StallState,
    UserPlaybook,
    UserPlaybookDowngradeResult,
    UserPlaybookUpgradeResult,
)
from reflexio_api.paging import PAGE_SIZE, SPLIT_ROWS, Ordering, Split, Window, iter_pages
from reflexio_api.settings import ReflexioSettings
from reflexio_api.waiting import OperationWatch, PollPolicy, ProgressCallback

T = TypeVar("T")


def _date_of(response: httpx.Response) -> int | None:
    """The epoch second of an answer's `Date` header; None when it has none or a bad one."""
    value = response.headers.get("date")
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


MAX_RATE_LIMIT_WAITS = 30
"""A listing waits out at most this many 429s (get_all_profiles allows 30 calls a minute)."""
RATE_LIMIT_WAIT_S = 60.0
STALE_PROBE_S = 300.0
"""How long a slot the server's stale check failed (H19) is watched for progress before its
operation is taken as dead. Progress moves as a user starts and ends, and one user can take
minutes with a real provider (0.2.32: 120 s a call, 3 retries, several calls a user); a dead
slot costs this once, until the next rerun replaces it. Half the server's own 600 s."""
STALE_PROBE_INTERVAL_S = 1.0


class ReflexioClient:
    """Typed, blocking client. Use as a context manager or call close()."""

    def __init__(
        self,
        settings: ReflexioSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ReflexioSettings()
        self.settings.check_transport_security()
        self._sleep = sleep
        self._clock = clock
        self._server_date: int | None = None
        """The epoch second of the last answer's Date header (see server_second)."""
        self._http = httpx.Client(
            base_url=self.settings.url,
            headers=self.settings.headers(),
            timeout=self.settings.timeout(),
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ReflexioClient(url={self.settings.url!r})"

    def __enter__(self) -> ReflexioClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, call: api.ApiCall[T]) -> T:
        try:
            response = self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                timeout=self.settings.timeout(long_running=call.long_running),
            )
        except httpx.RequestError as exc:
            raise transport_error(exc, self.settings.url, call.what) from None
        self._server_date = _date_of(response) or self._server_date
        return api.interpret(call, response, self.settings.url)

    # --- generation ---------------------------------------------------------------------

    def rerun_profile_generation(
        self,
        user_id: str | None = None,
        source: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> OperationStarted:
        """Start a background profile rerun (rows PENDING); raises OperationInProgress."""
        return self._send(api.rerun_profile_generation(user_id, source, start_time, end_time))

    def rerun_playbook_generation(
        self,
        agent_version: str,
        source: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> OperationStarted:
        """Start a background playbook rerun (rows PENDING); raises OperationInProgress."""
        call = api.rerun_playbook_generation(agent_version, source, start_time, end_time)
        return self._send(call)

    def manual_profile_generation(
        self, user_id: str | None = None, source: str | None = None
    ) -> ManualProfileGenerationResult:
        """Synchronous window-sized profile generation (rows CURRENT)."""
        return self._send(api.manual_profile_generation(user_id, source))

    def manual_playbook_generation(
        self, agent_version: str, source: str | None = None
    ) -> ManualPlaybookGenerationResult:
        """Synchronous window-sized playbook generation (rows CURRENT)."""
        return self._send(api.manual_playbook_generation(agent_version, source))

    # --- promotion ----------------------------------------------------------------------

    def upgrade_profiles(self, only_affected_users: bool) -> ProfileUpgradeResult:
        """Organisation-wide upgrade: PENDING -> CURRENT -> ARCHIVED, old ARCHIVED deleted."""
        return self._send(api.upgrade_profiles(only_affected_users))

    def downgrade_profiles(self, only_affected_users: bool) -> ProfileDowngradeResult:
        """Organisation-wide rollback: CURRENT -> PENDING, ARCHIVED -> CURRENT."""
        return self._send(api.downgrade_profiles(only_affected_users))

    def upgrade_user_playbooks(
        self, agent_version: str, archive_current: bool = True
    ) -> UserPlaybookUpgradeResult:
        """Promote PENDING user playbooks of one agent_version."""
        return self._send(api.upgrade_user_playbooks(agent_version, archive_current))

    def downgrade_user_playbooks(self, agent_version: str) -> UserPlaybookDowngradeResult:
        """Roll back the user playbooks of one agent_version."""
        return self._send(api.downgrade_user_playbooks(agent_version))

    # --- aggregation --------------------------------------------------------------------

    def run_playbook_aggregation(self, agent_version: str) -> AggregationResult:
        """Synchronous aggregation of user playbooks into agent playbooks."""
        return self._send(api.run_playbook_aggregation(agent_version))

    def start_playbook_aggregation_operation(
        self, request_id: str, agent_version: str
    ) -> AggregationOperation:
        """Submit a durable aggregation (idempotent per request_id)."""
        return self._send(api.start_playbook_aggregation_operation(request_id, agent_version))

    def get_playbook_aggregation_operation(self, operation_id: str) -> AggregationOperation:
        """Read a durable aggregation operation."""
        return self._send(api.get_playbook_aggregation_operation(operation_id))

    # --- operations ---------------------------------------------------------------------

    def get_operation_status(self, service_name: ServiceName) -> OperationStatus | None:
        """The service's status slot (latest operation only); None when there is none."""
        return self._send(api.get_operation_status(service_name))

    def running_operation(
        self, service_name: ServiceName, probe_s: float = STALE_PROBE_S
    ) -> OperationStatus | None:
        """The service's slot when an operation runs, else None. Running: in progress, or
        failed by the server's stale check (H19) while its progress still moves; such a
        slot is read once a second for up to `probe_s` (a dead one costs that once: the
        next rerun replaces it)."""
        status = self.get_operation_status(service_name)
        if status is None or status.status == "in_progress":
            return status
        if not status.auto_recovered:
            return None
        deadline = self._clock() + probe_s
        while self._clock() < deadline:
            self._sleep(STALE_PROBE_INTERVAL_S)
            now = self.get_operation_status(service_name)
            if now is None:
                return None
            if now.status == "in_progress":
                return now
            if now.operation_id != status.operation_id or not now.auto_recovered:
                return None  # another operation's end, or this one wrote its own
            if now.progress_mark != status.progress_mark:
                return now
        return None

    def cancel_operation(self, service_name: ServiceName | None = None) -> CancelResult:
        """Ask running operations to stop (both services when service_name is None)."""
        return self._send(api.cancel_operation(service_name))

    def wait_for_operation(
        self,
        service_name: ServiceName,
        operation_id: str,
        timeout_s: float,
        on_progress: ProgressCallback | None = None,
        *,
        policy: PollPolicy | None = None,
    ) -> OperationStatus:
        """Poll until OUR operation is completed, failed or cancelled; return that status.
        A failure the server's stale check wrote while the operation still progresses is
        waited through (H19, `PollPolicy.quiet_s`).

        Raises OperationReplaced when the slot shows another operation, OperationTimeout at
        the deadline. Transient polling errors are counted and tolerated until then.
        """
        watch = OperationWatch(
            service_name, operation_id, timeout_s, clock=self._clock, policy=policy or PollPolicy()
        )
        while True:
            try:
                seen = self.get_operation_status(service_name)
            except TransientError as exc:
                watch.record_error(exc)
            else:
                status = watch.check(seen)
                if on_progress is not None:
                    on_progress(status)
                if watch.is_over(status):
                    return status
            self._sleep(watch.next_delay())

    # --- stall --------------------------------------------------------------------------

    def get_stall_state(self) -> StallState:
        """Whether learning is stalled on a provider auth/billing error."""
        return self._send(api.get_stall_state())

    def mark_stall_notified(self) -> StallNotified:
        """Record that the current stall was notified."""
        return self._send(api.mark_stall_notified())

    # --- data ---------------------------------------------------------------------------

    def get_profile_statistics(self) -> ProfileStatistics:
        """Profile counts by status."""
        return self._send(api.get_profile_statistics())

    def server_second(self) -> int:
        """A lower bound of the server's clock now, in whole epoch seconds: the `Date` header
        of the last answer (HTTP dates are whole seconds, and uvicorn refreshes its header
        about once a second, so it lags), or this machine's clock when it is earlier or the
        server sent none. A pass that must list "every row stamped since it began" starts
        from here, so neither a server clock behind ours nor the header's lag loses a row."""
        local = int(time.time())
        return local if self._server_date is None else min(local, self._server_date)

    def iter_profiles(
        self,
        status: ProfileStatusName,
        *,
        user_id: str | None = None,
        source: str | None = None,
        page_size: int = PAGE_SIZE,
        expected_total: int | None = None,
        start: int | None = None,
        tolerate_changes: bool = False,
        split_limit: int = SPLIT_ROWS,
    ) -> Iterator[list[Profile]]:
        """Every profile in one status, in pages of at most `page_size`, each row once.

        `expected_total` (e.g. a count from get_profile_statistics) sizes the fetch of a
        second holding more rows than a page. Raises IncompleteListing when the listing
        cannot be proven complete: treat rows already yielded as unusable then.
        `start` lists only rows last modified at or after that epoch second (the delta of
        a pass); `tolerate_changes` is for a walk a delta listing follows (see
        reflexio_api/paging.py: a row may then be yielded again, keep its later version).
        A second of more than `split_limit` rows is read in windows of `created_at`.
        """

        def fetch(window: Window, limit: int) -> list[Profile]:
            return self._send_listing(api.list_profiles(status, user_id, source, window, limit))

        def fetch_created(window: Window, limit: int) -> list[Profile]:
            call = api.list_profiles(status, user_id, source, window, limit, "created_at")
            return self._send_listing(call)

        ordering = Ordering[Profile](
            what=f"profiles (status {status})",
            id_of=lambda row: row.profile_id,
            second_of=lambda row: row.last_modified_timestamp,
        )
        return iter_pages(
            fetch,
            ordering,
            page_size=page_size,
            expected_total=expected_total,
            start=start,
            tolerate_changes=tolerate_changes,
            split=Split("created_at", fetch_created),
            split_limit=split_limit,
        )

    def list_profiles(
        self,
        status: ProfileStatusName,
        user_id: str | None = None,
        source: str | None = None,
    ) -> list[Profile]:
        """Every profile in one status across users (complete, or IncompleteListing)."""
        return [
            row
            for page in self.iter_profiles(status, user_id=user_id, source=source)
            for row in page
        ]

    def get_user_profiles(
        self,
        user_id: str,
        statuses: Sequence[ProfileStatusName] = ("current",),
    ) -> list[Profile]:
        """One user's unexpired profiles in the given statuses; IncompleteListing if capped."""
        top_k = api.USER_PROFILES_TOP_K
        rows = self._send(api.get_user_profiles(user_id, statuses, top_k))
        if len(rows) >= top_k:
            raise IncompleteListing(
                f"get_profiles for one user returned {len(rows)} rows, its cap of {top_k}: "
                "more may exist. Use list_profiles(status, user_id=...) instead, which pages."
            )
        return rows

    def iter_user_playbooks(
        self,
        *,
        status: PlaybookStatusName | None = None,
        user_id: str | None = None,
        agent_version: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[list[UserPlaybook]]:
        """Every user playbook (no status: every live status), in pages, each row once.
        Raises IncompleteListing when the listing cannot be proven complete."""

        def fetch(window: Window, limit: int) -> list[UserPlaybook]:
            call = api.list_user_playbooks(status, user_id, agent_version, window, limit)
            return self._send_listing(call)

        ordering = Ordering[UserPlaybook](
            what=f"user playbooks (status {status or 'any live'})",
            id_of=lambda row: row.user_playbook_id,
            second_of=lambda row: row.created_at,
            tiebreak=lambda row: row.user_playbook_id,
            min_second=0,
        )
        return iter_pages(fetch, ordering, page_size=page_size)

    def list_user_playbooks(
        self,
        status: PlaybookStatusName | None = None,
        user_id: str | None = None,
        agent_version: str | None = None,
    ) -> list[UserPlaybook]:
        """Every user playbook (no status: every live status); complete, or IncompleteListing."""
        pages = self.iter_user_playbooks(
            status=status, user_id=user_id, agent_version=agent_version
        )
        return [row for page in pages for row in page]

    def list_agent_playbooks(
        self,
        agent_version: str | None = None,
        status: PlaybookStatusName | None = None,
        playbook_status: str | None = None,
    ) -> list[AgentPlaybook]:
        """Every agent playbook (no status: CURRENT only), optionally by approval state
        (pending/approved/rejected); complete, or IncompleteListing."""

        def fetch(window: Window, limit: int) -> list[AgentPlaybook]:
            call = api.list_agent_playbooks(agent_version, status, playbook_status, window, limit)
            return self._send_listing(call)

        ordering = Ordering[AgentPlaybook](
            what=f"agent playbooks (status {status or 'current'})",
            id_of=lambda row: row.agent_playbook_id,
            second_of=lambda row: row.created_at,
            tiebreak=lambda row: row.agent_playbook_id,
            min_second=0,
        )
        return [row for page in iter_pages(fetch, ordering) for row in page]

    def _send_listing(self, call: api.ApiCall[T]) -> T:
        """Send one page request; wait out rate limits (H11) so a long walk is not lost."""
        for _ in range(MAX_RATE_LIMIT_WAITS):
            try:
                return self._send(call)
            except TransientError as exc:
                if exc.status_code != 429:
                    raise
                self._sleep(min(exc.retry_after or RATE_LIMIT_WAIT_S, RATE_LIMIT_WAIT_S))
        return self._send(call)

    def delete_profiles(self, profile_ids: Sequence[str]) -> BulkDeleteResult:
        """Delete profiles by id."""
        return self._send(api.delete_profiles(profile_ids))

    def add_user_profiles(self, rows: Sequence[Mapping[str, Any]]) -> AddRowsResult:
        """Write profile rows as given (same id, status, content): restores a backup."""
        return self._send(api.add_user_profiles(rows))

    def add_user_playbooks(self, rows: Sequence[Mapping[str, Any]]) -> AddRowsResult:
        """Re-create user playbooks as CURRENT rows with new ids (content, not identity)."""
        return self._send(api.add_user_playbooks(rows))

    def delete_user_playbooks(self, user_playbook_ids: Sequence[int]) -> BulkDeleteResult:
        """Delete user playbooks by id."""
        return self._send(api.delete_user_playbooks(user_playbook_ids))

    def clear_user_data(self, user_id: str) -> ClearUserDataResult:
        """Remove every row of one user (anonymises merged playbooks: H9)."""
        return self._send(api.clear_user_data(user_id))

    def publish_interaction(
        self,
        user_id: str,
        session_id: str,
        source: str,
        agent_version: str,
        interactions: Sequence[Interaction | Mapping[str, str]],
        wait_for_response: bool = False,
        force_extraction: bool | None = None,
    ) -> PublishResult:
        """Publish turns of a session (used to seed test data)."""
        call = api.publish_interaction(
            user_id,
            session_id,
            source,
            agent_version,
            interactions,
            wait_for_response,
            force_extraction,
        )
        return self._send(call)

    # --- config and health --------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The full config. It may hold credentials: never log or publish it."""
        return self._send(api.get_config())

    def set_config(self, config: Mapping[str, Any]) -> ConfigWriteResult:
        """Replace the whole config (storage_config included)."""
        return self._send(api.set_config(config))

    def update_config(self, partial: Mapping[str, Any]) -> ConfigWriteResult:
        """Shallow top-level merge into the config."""
        return self._send(api.update_config(partial))

    def health(self) -> Health:
        """Server readiness."""
        return self._send(api.health())
