"""The stall check every pipeline starts with, and the handling of inferred stalls.

Server flag (GET /stall_state): when stalled and not yet notified, send the notification,
and only after it went out mark the stall notified on the server; so a failed send is tried
again by the next run, and a sent one is never repeated for the same stall.

Inferred stalls (H7: the flag never turns on for OpenAI-style providers) come from
generation results (core.stall.infer_stall). The server has no way to record that one was
notified, so a Prefect Variable per server remembers the reason already notified; it is
cleared by the next run whose generation produced output.

The `reflexio.stall.detected` event is emitted once per stall (with the notification), not
by every run that finds the stall again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.variables import Variable

from core.identity import server_slug
from core.stall import Stall, stall_from_state
from deployments import catalogue
from reflexio_api import ReflexioSettings
from tasks import events
from tasks.notify import NotificationFailed, send_notification
from tasks.server import mark_stall_notified, read_stall_state


def _subject(stall: Stall, settings: ReflexioSettings) -> str:
    return f"Reflexio learning stalled ({stall.reason}) on {settings.url}"


def _variable_name(settings: ReflexioSettings) -> str:
    return "reflexio_inferred_stall_" + server_slug(settings.url).replace("-", "_")


def check_stall(settings: ReflexioSettings, notification_block: str) -> tuple[Stall | None, str]:
    """Read the server's stall flag; notify once per stall. Returns (stall, note on notifying)."""
    stall = stall_from_state(read_stall_state(settings))
    if stall is None:
        return None, ""
    if stall.notified_before:
        return stall, "already notified for this stall"
    events.emit(catalogue.EVENT_STALL_DETECTED, settings.url, reason=stall.reason, inferred=False)
    try:
        send_notification(notification_block, _subject(stall, settings), stall.message)
    except NotificationFailed as exc:
        get_run_logger().error("%s", exc)
        return stall, f"notification FAILED ({exc}); the next run tries again"
    mark_stall_notified(settings)
    return stall, f"notified through block '{notification_block}'"


def report_inferred_stall(settings: ReflexioSettings, stall: Stall, notification_block: str) -> str:
    """Emit the event and notify once per (server, reason); returns a note on notifying."""
    name = _variable_name(settings)
    seen = Variable.get(name, default=None)
    if isinstance(seen, dict) and seen.get("reason") == stall.reason:
        return f"already notified at {seen.get('at')}"
    events.emit(catalogue.EVENT_STALL_DETECTED, settings.url, reason=stall.reason, inferred=True)
    try:
        send_notification(notification_block, _subject(stall, settings), stall.message)
    except NotificationFailed as exc:
        get_run_logger().error("%s", exc)
        return f"notification FAILED ({exc}); the next run tries again"
    Variable.set(
        name, {"reason": stall.reason, "at": datetime.now(UTC).isoformat()}, overwrite=True
    )
    return f"notified through block '{notification_block}'"


def clear_inferred_stall(settings: ReflexioSettings) -> None:
    """Generation produced output again: forget the inferred stall so a new one notifies."""
    name = _variable_name(settings)
    if Variable.get(name, default=None) is not None:
        Variable.unset(name)
