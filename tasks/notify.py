"""Send a notification through a Prefect notification block, surfacing failures.

The block is found by its name (any notification block type: Slack, Teams, Custom
Webhook, ...) with one filtered request (the name and the `notify` capability), then loaded
by its slug, `<block type>/<name>`. Delivery runs under `block.raise_on_failure()`, so a
failed send is an error, not a log line. Only a transient failure (connection error, timeout,
HTTP 408/425/429/5xx) is retried, with backoff; a missing block or a webhook that refuses
(401, 403, 404) fails at once. Slack and Teams go through Apprise, whose error carries no
status, only the log lines Apprise wrote while sending: the status is read from them
(`error=503`), and a failure with none (a connection error) counts as transient.
Errors never carry the block's URL, headers, secrets or Apprise's log: only the block's
name, its type and the exception type / HTTP status.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    BlockDocumentFilter,
    BlockDocumentFilterName,
    BlockSchemaFilter,
    BlockSchemaFilterCapabilities,
)
from prefect.client.schemas.objects import BlockDocument

from tasks.retry import retry_options, worst_case_s


class NotificationFailed(RuntimeError):
    """The notification could not be delivered (message free of URLs and secrets)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


TRANSIENT_HTTP = frozenset({408, 425, 429})
SEND_RETRIES = 2
"""Retries of a transient send failure, about 2 and 4 s apart (tasks/retry.py's backoff)."""
SEND_ATTEMPT_S = 12.0
"""The longest one send takes with the blocks deployments.setup creates: a Custom Webhook
times out after 10 s, Apprise (Slack, Teams) after 4 s to connect and 4 s to read."""
_APPRISE_STATUS = re.compile(r"\berror=(\d{3})\b")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed send: httpx's response, or Apprise's log (`error=503`)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is None and isinstance(exc, NotificationError):
        found = _APPRISE_STATUS.findall(exc.log or "")
        status = int(found[-1]) if found else None
    return status


def is_transient(exc: BaseException) -> bool:
    """A send failure that a retry may cure: no answer, a timeout, 408/425/429 or 5xx; an
    Apprise failure without a status (its connection errors log none)."""
    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_HTTP or status >= 500
    if isinstance(exc, NotificationError):
        return True
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


def send_budget_s() -> float:
    """The longest send_notification takes when every attempt fails slowly."""
    return worst_case_s(SEND_ATTEMPT_S, SEND_RETRIES)


def retry_transient_send(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn of send_notification: transient failures only."""
    try:
        state.result(raise_on_failure=True)
    except NotificationFailed as exc:
        return exc.transient
    except BaseException:
        return False
    return False


def notification_documents(name: str) -> list[BlockDocument]:
    """The notification block documents called `name` (any type that can notify): one
    filtered request, whatever else the workspace holds."""
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/block_documents/filter",
            json={
                "block_documents": BlockDocumentFilter(
                    name=BlockDocumentFilterName(any_=[name])
                ).model_dump(mode="json"),
                "block_schemas": BlockSchemaFilter(
                    block_capabilities=BlockSchemaFilterCapabilities(all_=["notify"])
                ).model_dump(mode="json"),
                "include_secrets": False,
            },
        )
        response.raise_for_status()
    return BlockDocument.model_validate_list(response.json())


def _block_slug(name: str) -> str:
    """'type-slug/name' of the notification block called `name` (a slug passes through)."""
    if "/" in name:
        return name
    docs = notification_documents(name)
    if not docs:
        raise NotificationFailed(
            f"No notification block named '{name}'. Create one with that name (e.g. a "
            "Custom Webhook or Slack Webhook block; python -m deployments.setup does) or "
            "pass notification_block=<name>."
        )
    if len(docs) > 1:
        kinds = ", ".join(sorted(d.block_type.slug for d in docs if d.block_type))
        raise NotificationFailed(
            f"Several notification blocks are named '{name}' ({kinds}); pass "
            f"'type-slug/{name}' instead."
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
    status = http_status(exc)
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
    **retry_options(retries=SEND_RETRIES, condition=retry_transient_send),
)
def send_notification(block_name: str, subject: str, body: str) -> None:
    """Load the block and deliver; a transient failure is retried SEND_RETRIES times, then
    the run fails."""
    block = load_notification_block(block_name)
    deliver(block, block_name, subject, body)
    get_run_logger().info("Notification sent through block '%s': %s", block_name, subject)
