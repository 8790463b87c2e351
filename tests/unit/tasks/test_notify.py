"""Notifications (tasks/notify.py): the block found by name with one filtered request, and
transient failures retried, Apprise's included (its error carries no status of its own).

The Apprise cases send through real Apprise to an HTTP server on loopback (Apprise's JSON
plugin, `json://`: the same code path and log lines as its Slack and Teams plugins).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect import flow
from prefect.blocks.notifications import AppriseNotificationBlock, CustomWebhookNotificationBlock
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentCreate
from pydantic import SecretStr

from local_stack.prefect_server import free_port
from tasks import notify
from tasks.notify import NotificationFailed, deliver, load_notification_block, send_notification
from tests.integration.pipeline_helpers import WebhookReceiver


class LoopbackApprise(AppriseNotificationBlock):
    """An Apprise block posting JSON to a loopback URL (`json://host:port/path`)."""

    _block_type_slug = "test-loopback-apprise"


@pytest.fixture
def hook(request: pytest.FixtureRequest) -> Iterator[WebhookReceiver]:
    """A receiver answering the statuses given as the test's parameter (the last repeats)."""
    *first, last = request.param
    with WebhookReceiver(status=last, statuses=tuple(first)) as running:
        yield running


def _json_url(receiver: WebhookReceiver) -> str:
    """The receiver's URL for Apprise's JSON plugin."""
    return receiver.url.replace("http://", "json://")


def _block(url: str) -> LoopbackApprise:
    return LoopbackApprise(url=SecretStr(url))


@pytest.mark.parametrize(
    ("hook", "transient", "status"),
    [([503], True, "HTTP 503"), ([429], True, "HTTP 429"), ([404], False, "HTTP 404")],
    indirect=["hook"],
)
def test_an_apprise_failure_is_classified_by_the_status_in_its_log(hook, transient, status):
    with pytest.raises(NotificationFailed) as failed:
        deliver(_block(_json_url(hook)), "alerts", "subject", "body")
    assert failed.value.transient is transient
    assert status in str(failed.value)
    assert "secret-token-123" not in str(failed.value) and "127.0.0.1" not in str(failed.value)
    assert len(hook.posts) == 1


def test_an_apprise_connection_failure_is_transient():
    url = f"json://127.0.0.1:{free_port()}/hook/secret-token-123"  # nothing listens
    with pytest.raises(NotificationFailed) as failed:
        deliver(_block(url), "alerts", "subject", "body")
    assert failed.value.transient
    assert "secret-token-123" not in str(failed.value) and "127.0.0.1" not in str(failed.value)


@flow(name="test-notify")
def _notify(block_name: str) -> None:
    send_notification(block_name, "subject", "body")


@pytest.mark.parametrize("hook", [[503, 502, 200]], indirect=True)
def test_a_transient_apprise_failure_is_sent_again(prefect_api, hook, monkeypatch):
    monkeypatch.setattr(notify, "load_notification_block", lambda name: _block(_json_url(hook)))
    state = _notify("alerts", return_state=True)
    assert state.is_completed(), state.message
    assert len(hook.posts) == 3


@pytest.mark.parametrize("hook", [[404, 200]], indirect=True)
def test_a_refused_apprise_send_is_not_sent_again(prefect_api, hook, monkeypatch):
    monkeypatch.setattr(notify, "load_notification_block", lambda name: _block(_json_url(hook)))
    state = _notify("alerts", return_state=True)
    assert state.is_failed()
    assert len(hook.posts) == 1


def _fill(count: int) -> None:
    """`count` Secret blocks named a-notify-filler-NNN, one request each."""
    Secret(value="x").save("a-notify-filler-000", overwrite=True)
    with get_client(sync_client=True) as client:
        first = client.read_block_document_by_name("a-notify-filler-000", "secret")
        for i in range(1, count):
            client.create_block_document(
                BlockDocumentCreate(
                    name=f"a-notify-filler-{i:03d}",
                    data={"value": "x"},
                    block_schema_id=first.block_schema_id,
                    block_type_id=first.block_type_id,
                )
            )


def test_the_block_is_found_by_name_among_hundreds_and_loaded_by_its_slug(prefect_api):
    _fill(201)  # more than the API's default page of 200, every one sorted before it
    Secret(value="not a notification block").save("z-alerts", overwrite=True)
    CustomWebhookNotificationBlock(name="z", url="http://127.0.0.1:9/h").save(
        "z-alerts", overwrite=True
    )
    block = load_notification_block("z-alerts")
    assert isinstance(block, CustomWebhookNotificationBlock)
    assert notify._block_slug("z-alerts") == "custom-webhook/z-alerts"
    with pytest.raises(NotificationFailed, match="No notification block named 'a-notify-filler"):
        load_notification_block("a-notify-filler-000")  # a Secret: not a notification block
