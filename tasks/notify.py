"""Send a notification through a Prefect notification block, surfacing failures.

The block is found by its name (any notification block type: Slack, Teams, Custom
Webhook, ...). Delivery runs under `block.raise_on_failure()`, so a failed send is an
error, not a log line. Only a transient failure (connection error, timeout, HTTP 408/429/5xx)
is retried; a missing block or a webhook that refuses (401, 403, 404) fails at once.
Errors never carry the block's URL, headers or secrets: only the block's name, its type and
the exception type / HTTP status.
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client


class NotificationFailed(RuntimeError):
    """The notification could not be delivered (message free of URLs and secrets)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


TRANSIENT_HTTP = frozenset({408, 425, 429})


def is_transient(exc: BaseException) -> bool:
    """A send failure that a retry may cure: no answer, a timeout, 408/425/429 or 5xx."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return status in TRANSIENT_HTTP or status >= 500
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


def retry_transient_send(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn of send_notification: transient failures only."""
    try:
        state.result(raise_on_failure=True)
    except NotificationFailed as exc:
        return exc.transient
    except BaseException:
        return False
    return False


def _block_slug(name: str) -> str:
    """'type-slug/name' of the block document called `name` (a slug passes through)."""
    if "/" in name:
        return name
    with get_client(sync_client=True) as client:
        docs = [d for d in client.read_block_documents(include_secrets=False) if d.name == name]
    if not docs:
        raise NotificationFailed(
            f"No Prefect block named '{name}'. Create a notification block with that name "
            "(e.g. a Custom Webhook or Slack Webhook block) or pass notification_block=<name>."
        )
    if len(docs) > 1:
        kinds = ", ".join(sorted(d.block_type.slug for d in docs if d.block_type))
        raise NotificationFailed(
            f"Several blocks are named '{name}' ({kinds}); pass 'type-slug/{name}' instead."
        )
    block_type = docs[0].block_type
    if block_type is None:
        raise NotificationFailed(f"Block '{name}' has no block type recorded.")
    return f"{block_type.slug}/{name}"


def load_notification_block(name: str) -> NotificationBlock:
    """Load the notification block called `name` (or 'type-slug/name')."""
    slug = _block_slug(name)
    try:
        block = Block.load(slug)
    except Exception as exc:
        raise NotificationFailed(
            f"Could not load notification block '{name}': {type(exc).__name__}."
        ) from None
    if not isinstance(block, NotificationBlock):
        raise NotificationFailed(
            f"Block '{name}' is a {type(block).__name__}, not a notification block."
        )
    return block


def _safe_reason(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


def deliver(block: NotificationBlock, name: str, subject: str, body: str) -> None:
    """Send `body` with `subject`; raise NotificationFailed (secret-free) when it fails."""
    try:
        with block.raise_on_failure():
            block.notify(body, subject)
    except Exception as exc:
        raise NotificationFailed(
            f"Notification through block '{name}' ({type(block).__name__}) failed: "
            f"{_safe_reason(exc)}. Check the block's target and credentials.",
            transient=is_transient(exc),
        ) from None


@task(
    name="send-notification",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient_send,
)
def send_notification(block_name: str, subject: str, body: str) -> None:
    """Load the block and deliver; a transient failure is retried twice, then the run fails."""
    block = load_notification_block(block_name)
    deliver(block, block_name, subject, body)
    get_run_logger().info("Notification sent through block '%s': %s", block_name, subject)
