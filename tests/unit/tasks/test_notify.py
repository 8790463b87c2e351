"""Notifications (tasks/notify.py): the block found by name with one filtered request, and
transient failures retried, Apprise's included (its error carries no status of its own).

The Apprise cases send through real Apprise to an HTTP server on loopback (Apprise's JSON
plugin, `json://`: the same code path and log lines as its Slack and Teams plugins).
"""

from __future__ import annotations

import http.server
import threading
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


class LoopbackApprise(AppriseNotificationBlock):
    """An Apprise block posting JSON to a loopback URL (`json://host:port/path`)."""

    _block_type_slug = "test-loopback-apprise"


class Hook:
    """An HTTP server answering each POST with the next status of `statuses` (the last one
    repeats); `posts` counts what it received."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.posts = 0
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = hook.statuses[min(hook.posts, len(hook.statuses) - 1)]
                hook.posts += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook-secret-token"

    def __enter__(self) -> Hook:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(request: pytest.FixtureRequest) -> Iterator[Hook]:
    with Hook(request.param) as running:
        yield running


def _block(url: str) -> LoopbackApprise:
    return LoopbackApprise(url=SecretStr(url))


@pytest.mark.parametrize(
    ("hook", "transient", "status"),
    [([503], True, "HTTP 503"), ([429], True, "HTTP 429"), ([404], False, "HTTP 404")],
    indirect=["hook"],
)
def test_an_apprise_failure_is_classified_by_the_status_in_its_log(hook, transient, status):
    with pytest.raises(NotificationFailed) as failed:
        deliver(_block(hook.url), "alerts", "subject", "body")
    assert failed.value.transient is transient
    assert status in str(failed.value)
    assert "secret-token" not in str(failed.value) and "127.0.0.1" not in str(failed.value)
    assert hook.posts == 1


def test_an_apprise_connection_failure_is_transient():
    url = f"json://127.0.0.1:{free_port()}/hook-secret-token"  # nothing listens
    with pytest.raises(NotificationFailed) as failed:
        deliver(_block(url), "alerts", "subject", "body")
    assert failed.value.transient
    assert "secret-token" not in str(failed.value) and "127.0.0.1" not in str(failed.value)


@flow(name="test-notify")
def _notify(block_name: str) -> None:
    send_notification(block_name, "subject", "body")


@pytest.mark.parametrize("hook", [[503, 502, 200]], indirect=True)
def test_a_transient_apprise_failure_is_sent_again(prefect_api, hook, monkeypatch):
    monkeypatch.setattr(notify, "load_notification_block", lambda name: _block(hook.url))
    state = _notify("alerts", return_state=True)
    assert state.is_completed(), state.message
    assert hook.posts == 3


@pytest.mark.parametrize("hook", [[404, 200]], indirect=True)
def test_a_refused_apprise_send_is_not_sent_again(prefect_api, hook, monkeypatch):
    monkeypatch.setattr(notify, "load_notification_block", lambda name: _block(hook.url))
    state = _notify("alerts", return_state=True)
    assert state.is_failed()
    assert hook.posts == 1


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
