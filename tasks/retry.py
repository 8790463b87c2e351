"""Retry policy of every server-calling task: transient faults only, backoff with jitter.

- `retry_condition_fn` says yes only for `reflexio_api.is_retryable` (connection errors,
  timeouts, 5xx, 429). Auth, billing and bad-request errors fail at once.
- Writes that are not idempotent (upgrade, downgrade, delete, add) use
  `retry_unless_maybe_applied`: a TransientError with `maybe_applied=True` is not retried
  blindly; the task itself re-checks the server's state first (see tasks/server.py).
- Retry-After: Prefect's delay is fixed when the task is defined, so `honour_retry_after`
  sleeps the server's Retry-After (bounded) inside the task before re-raising; the backoff
  delay then comes on top.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect.tasks import exponential_backoff

from reflexio_api import TransientError, is_retryable

MAX_RETRY_AFTER_S = 60.0
RETRIES = 4
BACKOFF_FACTOR = 2
JITTER = 0.5


def _exception_of(state: Any) -> BaseException | None:
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:
        return exc
    return None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry only what `reflexio_api.is_retryable` allows."""
    exc = _exception_of(state)
    return exc is not None and is_retryable(exc)


def retry_unless_maybe_applied(task: Any, task_run: Any, state: Any) -> bool:
    """For non-idempotent writes: retry a transient fault only if the write surely did not
    reach the server (connection refused); else the task decides after reading the state."""
    exc = _exception_of(state)
    return isinstance(exc, TransientError) and not exc.maybe_applied


@contextmanager
def honour_retry_after(
    limit_s: float = MAX_RETRY_AFTER_S, sleep: Callable[[float], None] = time.sleep
) -> Iterator[None]:
    """Sleep the server's Retry-After (at most `limit_s`) before a TransientError leaves."""
    try:
        yield
    except TransientError as exc:
        if exc.retry_after:
            sleep(min(exc.retry_after, limit_s))
        raise


def worst_case_s(attempt_s: float, retries: int = RETRIES, retry_after_s: float = 0.0) -> float:
    """The longest a task with these retries takes when every attempt fails slowly: each
    attempt runs `attempt_s` and sleeps `retry_after_s` (the server's Retry-After, capped),
    and each backoff delay comes out at its jitter's upper bound."""
    delays = exponential_backoff(backoff_factor=BACKOFF_FACTOR)(retries)
    return (retries + 1) * (attempt_s + retry_after_s) + sum(delays) * (1 + JITTER)


def retry_options(
    *,
    writes: bool = False,
    retries: int = RETRIES,
    condition: Callable[[Any, Any, Any], bool] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for @task: `retries` with exponential backoff and jitter, on
    transient faults (a write: only when it cannot have been applied) or `condition`."""
    default = retry_unless_maybe_applied if writes else retry_transient
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=BACKOFF_FACTOR),
        "retry_jitter_factor": JITTER,
        "retry_condition_fn": condition or default,
    }
