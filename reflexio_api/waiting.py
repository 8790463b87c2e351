"""Following one background operation to its end, shared by both clients.

The server keeps one status slot per service (the latest operation only), so every poll is
matched against our operation id. Success is never assumed: only a status seen for our id
ends the wait, and a failure the server's stale check wrote while the operation may still
run (H19) ends it only once the operation has shown no progress for `PollPolicy.quiet_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reflexio_api.errors import OperationReplaced, OperationTimeout, TransientError
from reflexio_api.models import OperationStatus, ProgressMark, ServiceName

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[OperationStatus], object]


@dataclass(frozen=True)
class PollPolicy:
    """Poll fast at first, then back off geometrically up to a cap. The 0.5 s cap notices a
    finished operation within half a second (the official SDK polls every 3 s; a 2 s cap
    noticed it up to 2 s late, most of a short run's overhead, bench/RESULTS.md) for one
    cheap GET (the server reads one status row) twice a second."""

    initial_s: float = 0.2
    factor: float = 1.5
    cap_s: float = 0.5
    quiet_s: float = 600.0
    """How long an operation the server's stale check marked failed (H19) may show no
    progress (users processed or failed, the user at work) before the failure is taken as
    its end: the server's own threshold, now counted from the last progress seen."""

    def delays(self) -> Iterator[float]:
        """The successive pauses between polls: initial, initial*factor, ... capped."""
        delay = self.initial_s
        while True:
            yield min(delay, self.cap_s)
            delay *= self.factor


class OperationWatch:
    """Decides, poll by poll, whether the wait for one operation is over."""

    def __init__(
        self,
        service_name: ServiceName,
        operation_id: str,
        timeout_s: float,
        *,
        clock: Callable[[], float],
        policy: PollPolicy,
    ) -> None:
        self.service_name = service_name
        self.operation_id = operation_id
        self.timeout_s = timeout_s
        self.polls = 0
        self.transient_errors = 0
        self.last_error: TransientError | None = None
        self.last_status: OperationStatus | None = None
        self._clock = clock
        self._deadline = clock() + timeout_s
        self._delays = policy.delays()
        self._quiet_s = policy.quiet_s
        self._progress: ProgressMark | None = None
        self._progress_seen_at = clock()

    def check(self, status: OperationStatus | None) -> OperationStatus:
        """Return the status when it is ours; raise OperationReplaced otherwise."""
        self.polls += 1
        if status is None or status.operation_id != self.operation_id:
            raise self._replaced(status)
        self.last_status = status
        progress = status.progress_mark
        if progress != self._progress:
            self._progress, self._progress_seen_at = progress, self._clock()
        return status

    def is_over(self, status: OperationStatus) -> bool:
        """Whether `status` (ours, from `check`) ends the wait: a terminal state, except a
        stale-check failure (H19) of an operation that progressed within `quiet_s`."""
        if not status.is_terminal:
            return False
        if not status.auto_recovered:
            return True
        quiet = self._clock() - self._progress_seen_at
        if quiet < self._quiet_s:
            return False
        logger.warning(
            "%s operation %s: the server's stale check marked it failed and it has shown no "
            "progress for %.0f s; taken as ended (%s)",
            self.service_name,
            self.operation_id,
            quiet,
            status.error_message,
        )
        return True

    def record_error(self, exc: TransientError) -> None:
        """Count a transient polling failure; waiting goes on until the deadline."""
        self.transient_errors += 1
        self.last_error = exc
        logger.warning(
            "Polling %s operation %s failed (%d transient errors so far), will retry: %s",
            self.service_name,
            self.operation_id,
            self.transient_errors,
            exc,
        )

    def next_delay(self) -> float:
        """Seconds to sleep before the next poll; raises OperationTimeout past the deadline."""
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise self._timeout()
        return min(next(self._delays), remaining)

    def _replaced(self, status: OperationStatus | None) -> OperationReplaced:
        ours = f"{self.service_name} operation {self.operation_id}"
        if status is None:
            message = (
                f"Reflexio no longer reports any {self.service_name} operation, so {ours} "
                "cannot be followed (was the server's state reset?). Do not assume it finished: "
                "check the data before going on."
            )
        else:
            message = (
                f"Reflexio's {self.service_name} status slot now shows operation "
                f"{status.operation_id or '(without id)'} ({status.status}), not {ours}: another "
                "operation replaced ours and its outcome can no longer be read. Do not assume "
                "it finished; find out who started the other operation before going on."
            )
        return OperationReplaced(
            message,
            expected_id=self.operation_id,
            seen_id=None if status is None else status.operation_id,
        )

    def _timeout(self) -> OperationTimeout:
        status = self.last_status
        seen = (
            f"last seen {status.status}, {status.processed_users}/{status.total_users} users"
            if status is not None
            else "never seen"
        )
        errors = f"{self.transient_errors} transient polling errors"
        if self.last_error is not None:
            errors += f", last: {self.last_error}"
        return OperationTimeout(
            f"{self.service_name} operation {self.operation_id} did not finish within "
            f"{self.timeout_s:g} s ({seen}; {self.polls} polls; {errors}). It may still be "
            f"running: wait longer, or stop it with cancel_operation('{self.service_name}').",
            last_status=status,
            transient_errors=self.transient_errors,
        )
