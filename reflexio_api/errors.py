"""Errors raised by the Reflexio client.

Every message says what happened and what to do. No message ever contains the API key,
request headers or a Python stack trace sent by the server.
"""

from __future__ import annotations

from typing import Any

_TRACEBACK_START = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
_MAX_SERVER_TEXT = 500


class ReflexioError(Exception):
    """Base class of every error this package raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(ReflexioError):
    """The client settings are unsafe or unusable (e.g. a key over plain http)."""


class TransientError(ReflexioError):
    """A fault worth retrying: connection errors, timeouts, 5xx, 429.

    `retry_after` is the server's Retry-After in seconds, when it sent one. `maybe_applied`
    is True when the request may have reached the server (read timeout, 5xx): repeating a
    write then needs a look at the server's state first.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class AuthError(ReflexioError):
    """The server refused who we are (401) or what we sent as identity (403)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ClientError(ReflexioError):
    """The server rejected the request itself (4xx other than 401/403/408/429)."""

    def __init__(self, message: str, *, status_code: int, detail: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class ServerReportedFailure(ReflexioError):
    """HTTP 200 with `success: false` (hazard H10); `server_message` has tracebacks cut out."""

    def __init__(self, message: str, *, server_message: str) -> None:
        super().__init__(message)
        self.server_message = server_message


class OperationInProgress(ServerReportedFailure):
    """A rerun was refused because another generation of that service is running."""


class UnexpectedPayload(ReflexioError):
    """The answer was not what the API promises: not JSON, a missing field, a wrong type."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IncompleteListing(ReflexioError):
    """A listing could not be proven complete (H13): never act on a partial listing."""


class OperationTimeout(ReflexioError):
    """A background operation did not reach a final status before the deadline.

    `last_status` is the last OperationStatus seen for it (None if none was seen).
    """

    def __init__(self, message: str, *, last_status: Any = None, transient_errors: int = 0) -> None:
        super().__init__(message)
        self.last_status = last_status
        self.transient_errors = transient_errors


class OperationReplaced(ReflexioError):
    """The server's single status slot for a service now shows another operation than ours."""

    def __init__(self, message: str, *, expected_id: str, seen_id: str | None) -> None:
        super().__init__(message)
        self.expected_id = expected_id
        self.seen_id = seen_id


def is_retryable(exc: BaseException) -> bool:
    """True only for faults that a retry may cure (TransientError)."""
    return isinstance(exc, TransientError)


def clean_server_text(text: str, limit: int = _MAX_SERVER_TEXT) -> str:
    """Cut Python tracebacks out of server text, keep each exception line, bound the length."""
    kept: list[str] = []
    in_traceback = False
    for line in text.splitlines():
        if _TRACEBACK_START in line:
            kept.append(line.split(_TRACEBACK_START, 1)[0])
            in_traceback = True
        elif line.startswith(_CHAINED):
            continue
        elif in_traceback:
            if line.strip() and not line[0].isspace():
                kept.append(f"[traceback removed] {line}")
                in_traceback = False
        else:
            kept.append(line)
    if in_traceback:
        kept.append("[traceback removed]")
    cleaned = " ".join(" ".join(kept).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."
