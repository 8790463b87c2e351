"""Stall watch: every few minutes, tell someone once when learning stalls and once when it
recovers.

- Once per stall: the server's own flag. A stall with `notified_in_cc` false is notified,
  and only AFTER the notification went out is it marked notified (POST
  /stall_state/notified). A failed send leaves the flag unset, so the next run tries again.
- Once per recovery: the server keeps no history (its flag just goes back to "not stalled"),
  so the last state seen is kept in a Prefect Variable per server,
  `reflexio_stall_watch_<host>_<port>`. A run that sees "not stalled" after "stalled"
  notifies the recovery; the Variable is only updated after every notification went out.
- Notifications go through the Prefect notification block named by `notification_block`
  (tasks/notify.py: `raise_on_failure`, so a failed send fails the run).
- Once per outage: a server that does not answer (connection refused, timeouts, 5xx after the
  task's retries) is notified once, when the outage is first seen, and once when it answers
  again; the runs in between end in a FAILED state named `Unreachable`, which the failed-run
  automation does not match (it would notify every 5 minutes) and which the "stall watch is
  silent" automation counts as the watch working (deployments/setup.py).
- A slow outage ends `Unreachable` too, never TimedOut: the watch's read and stall-flag
  write retry less and wait less than other flows' (WATCH_*), so the longest a run can take
  (`run_budget_s`: the read and the write failing slowly through every retry, and two
  notifications doing the same) fits in its timeout, which is shorter than its 5-minute
  schedule: one run never overlaps the next, so no two runs notify one outage.
- Events: `reflexio.stall.notified`, `reflexio.stall.recovered`,
  `reflexio.server.unreachable` and `reflexio.server.reachable` (resource: the server).
  It does not emit `reflexio.stall.detected` every 5 minutes: that event is what the other
  flows emit when a stall stops them.
"""

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from prefect.variables import Variable

from core.identity import server_slug
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows.flat_params import flat_parameters
from flows.params import StallWatchParams
from reflexio_api import ReflexioSettings, TransientError
from reflexio_api.models import StallState
from tasks import events
from tasks.notify import send_budget_s, send_notification
from tasks.retry import worst_case_s
from tasks.server import mark_stall_notified, read_stall_state

STALL_NOTIFIED = "reflexio.stall.notified"
STALL_RECOVERED = "reflexio.stall.recovered"
SERVER_UNREACHABLE = "reflexio.server.unreachable"
SERVER_REACHABLE = "reflexio.server.reachable"
UNREACHABLE_STATE_NAME = "Unreachable"

WATCH_RETRIES = 2
WATCH_CONNECT_TIMEOUT_S = 5.0
WATCH_READ_TIMEOUT_S = 10.0
WATCH_RETRY_AFTER_S = 5.0
"""The watch's server calls: 2 retries, at most 5 s to connect, 10 s to read, 5 s of a
server's Retry-After (the settings' timeouts when they are shorter)."""
WATCH_MARGIN_S = 30.0
"""What a run keeps of its timeout for its Prefect API calls (Variable, events, block)."""
watch_read = read_stall_state.with_options(retries=WATCH_RETRIES)
watch_mark = mark_stall_notified.with_options(retries=WATCH_RETRIES)


def run_budget_s() -> float:
    """The longest one run takes: the read and the mark failing slowly through every retry,
    two notifications doing the same, and the margin. Must fit in the flow's timeout."""
    attempt_s = WATCH_CONNECT_TIMEOUT_S + WATCH_READ_TIMEOUT_S
    call_s = worst_case_s(attempt_s, WATCH_RETRIES, WATCH_RETRY_AFTER_S)
    return 2 * call_s + 2 * send_budget_s() + WATCH_MARGIN_S


def watch_settings(settings: ReflexioSettings) -> ReflexioSettings:
    """The settings with the watch's timeouts (or shorter ones already set)."""
    return settings.model_copy(
        update={
            "connect_timeout_s": min(settings.connect_timeout_s, WATCH_CONNECT_TIMEOUT_S),
            "read_timeout_s": min(settings.read_timeout_s, WATCH_READ_TIMEOUT_S),
        }
    )


def variable_name(url: str) -> str:
    """The Prefect Variable remembering the last stall state seen on this server."""
    return "reflexio_stall_watch_" + server_slug(url).replace("-", "_")


_ADVICE = {
    "auth_error": "The LLM provider rejects the Reflexio server's API key: replace the key.",
    "billing_error": "The LLM provider refuses on billing/quota: check the provider account.",
}


def stall_text(url: str, state: StallState) -> tuple[str, str]:
    """Subject and body of the stall notification (no secrets: the server's message only)."""
    reason = state.reason or "unknown"
    since = state.stalled_at.isoformat() if state.stalled_at else "an unknown time"
    body = (
        f"Reflexio learning is stalled on {url} since {since}: {reason}. "
        f"{_ADVICE.get(reason, 'Check the server log.')} "
        "Publishes are accepted but excluded from learning until this is fixed; manual "
        "generation and reruns still call the provider (H7)."
    )
    if state.error_message:
        body += f" Server message: {state.error_message[:300]}"
    return f"Reflexio learning stalled ({reason}) on {url}", body


def recovery_text(url: str, last: dict[str, Any]) -> tuple[str, str]:
    """Subject and body of the recovery notification."""
    reason = last.get("reason") or "unknown"
    since = last.get("stalled_at") or "an unknown time"
    return (
        f"Reflexio learning recovered on {url}",
        f"The stall on {url} ({reason}, since {since}) is over: the server no longer reports "
        "learning as paused. Interactions published during the stall were not learned from; "
        "a sweep or regeneration picks them up.",
    )


def unreachable_text(url: str, error: str) -> tuple[str, str]:
    """Subject and body of the notification that the server stopped answering."""
    return (
        f"Reflexio server unreachable: {url}",
        f"The stall watch cannot reach {url}: {error} Nothing on that server is watched or "
        "regenerated until it answers again; this is notified once per outage, and again "
        "when it answers.",
    )


def reachable_text(url: str, since: str) -> tuple[str, str]:
    """Subject and body of the notification that the server answers again."""
    return (
        f"Reflexio server reachable again: {url}",
        f"{url} answers again (unreachable since {since}); the stall watch is back to work.",
    )


def _remember(name: str, state: StallState | None, last: dict[str, Any], since: str | None) -> None:
    """Keep what this run saw (after every notification of it went out)."""
    seen = (
        {
            "stalled": state.stalled,
            "reason": state.reason,
            "stalled_at": state.stalled_at.isoformat() if state.stalled_at else None,
        }
        if state is not None
        else {k: last.get(k) for k in ("stalled", "reason", "stalled_at")}
    )
    Variable.set(name, {**seen, "unreachable_since": since}, overwrite=True)


def _unreachable(
    params: StallWatchParams, name: str, last: dict[str, Any], exc: Exception
) -> State:
    """The server did not answer: notify the first time in this outage, then stay quiet."""
    url = params.settings().url
    since = last.get("unreachable_since")
    if since is None:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        subject, body = unreachable_text(url, str(exc))
        send_notification(params.notification_block, subject, body)
        events.emit(SERVER_UNREACHABLE, url, error=type(exc).__name__)
        outcome = f"unreachable ({exc}); notified through '{params.notification_block}'"
    else:
        outcome = f"unreachable since {since}, already notified ({exc})"
    _remember(name, None, last, since)
    get_run_logger().warning("Stall watch on %s: %s", url, outcome)
    return Failed(name=UNREACHABLE_STATE_NAME, message=outcome)


@flow(
    name="stall-watch",
    flow_run_name=run_names.stall_watch,
    timeout_seconds=FLOW_TIMEOUT_S["stall-watch"],
    validate_parameters=True,
)
@flat_parameters(StallWatchParams)
def stall_watch(params: StallWatchParams) -> State:
    """One look at the stall flag; notify a new stall once, a recovery once."""
    logger = get_run_logger()
    settings = watch_settings(params.settings())
    name = variable_name(settings.url)
    found = Variable.get(name, default=None)
    last: dict[str, Any] = found if isinstance(found, dict) else {}
    was_stalled = last.get("stalled") is True  # a hand-edited "no" is not a stall

    try:
        state = watch_read(settings, WATCH_RETRY_AFTER_S)
    except TransientError as exc:
        return _unreachable(params, name, last, exc)
    if last.get("unreachable_since"):
        subject, body = reachable_text(settings.url, last["unreachable_since"])
        send_notification(params.notification_block, subject, body)
        events.emit(SERVER_REACHABLE, settings.url)
        _remember(name, None, last, None)  # the outage is over, whatever comes next
    if state.stalled and not state.notified_in_cc:
        subject, body = stall_text(settings.url, state)
        send_notification(params.notification_block, subject, body)
        watch_mark(settings, WATCH_RETRY_AFTER_S)
        events.emit(STALL_NOTIFIED, settings.url, reason=state.reason)
        outcome = f"new stall ({state.reason}) notified through '{params.notification_block}'"
    elif state.stalled:
        outcome = f"stalled ({state.reason}), already notified"
    elif was_stalled:
        subject, body = recovery_text(settings.url, last)
        send_notification(params.notification_block, subject, body)
        events.emit(STALL_RECOVERED, settings.url)
        outcome = f"recovered, notified through '{params.notification_block}'"
    else:
        outcome = "not stalled"

    _remember(name, state, last, None)
    logger.info("Stall watch on %s: %s", settings.url, outcome)
    return Completed(message=outcome, data=outcome)
