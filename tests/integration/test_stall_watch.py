"""Stall watch: one notification per stall, one per recovery, delivered to a real webhook."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.variables import Variable

import flows.stall_watch as watch_module
from flows.stall_watch import UNREACHABLE_STATE_NAME, stall_watch, variable_name
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(prefect_api: None) -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        CustomWebhookNotificationBlock(
            name="stall-test-hook",
            url=hook.url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        ).save("stall-watch-test", overwrite=True)
        yield hook


@pytest.fixture
def clean_stack(seeded_stack: LocalStack) -> Iterator[LocalStack]:
    Variable.unset(variable_name(seeded_stack.url))
    try:
        yield seeded_stack
    finally:
        seeded_stack.clear_stall()
        Variable.unset(variable_name(seeded_stack.url))


def _watch(stack: LocalStack):
    params = dict(reflexio_url=stack.url, notification_block="stall-watch-test")
    return stall_watch(**params, return_state=True)


def test_notifies_once_per_stall_and_once_on_recovery(
    clean_stack: LocalStack, receiver: WebhookReceiver
):
    assert _watch(clean_stack).is_completed()
    assert receiver.posts == []

    clean_stack.set_stall("auth_error", "invalid api key")
    first, second = _watch(clean_stack), _watch(clean_stack)
    assert first.is_completed() and second.is_completed()
    assert len(receiver.posts) == 1
    assert "stalled (auth_error)" in receiver.posts[0]["subject"]
    assert "already notified" in second.message
    with ReflexioClient(ReflexioSettings(url=clean_stack.url)) as client:
        assert client.get_stall_state().notified_in_cc is True

    clean_stack.clear_stall()
    third, fourth = _watch(clean_stack), _watch(clean_stack)
    assert third.is_completed() and fourth.is_completed()
    assert len(receiver.posts) == 2
    assert "recovered" in receiver.posts[1]["subject"]
    assert fourth.message == "not stalled"


def test_a_hand_edited_not_stalled_is_no_stall_to_recover_from(
    clean_stack: LocalStack, receiver: WebhookReceiver
):
    """What the watch remembers is a Variable an operator can edit in the UI: only `true`
    means it saw a stall, so "no" sends no recovery notice."""
    Variable.set(variable_name(clean_stack.url), {"stalled": "no"}, overwrite=True)
    state = _watch(clean_stack)
    assert state.is_completed() and state.message == "not stalled"
    assert receiver.posts == []


def test_failed_delivery_fails_the_run_and_is_tried_again(
    clean_stack: LocalStack, receiver: WebhookReceiver
):
    clean_stack.set_stall("billing_error")
    receiver.status = 500
    failed = _watch(clean_stack)
    assert failed.is_failed()
    with ReflexioClient(ReflexioSettings(url=clean_stack.url)) as client:
        assert client.get_stall_state().notified_in_cc is False, "not marked when not sent"

    receiver.status = 200
    receiver.posts.clear()
    assert _watch(clean_stack).is_completed()
    assert len(receiver.posts) == 1 and "billing_error" in receiver.posts[0]["subject"]


def test_an_unreachable_server_is_notified_once_per_outage_and_once_when_back(
    receiver: WebhookReceiver, tmp_path, monkeypatch
):
    """Nothing listens on the port: the first run notifies, the next stays quiet (and neither
    ends in the plain Failed state the failed-run automation matches); then the real server
    starts on that port and the next run says it is back, once."""
    quick = watch_module.watch_read.with_options(retries=1, retry_delay_seconds=0)
    monkeypatch.setattr(watch_module, "watch_read", quick)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    Variable.unset(variable_name(url))
    params = dict(reflexio_url=url, notification_block="stall-watch-test")
    try:
        down = [stall_watch(**params, return_state=True) for _ in range(2)]
        assert [s.name for s in down] == [UNREACHABLE_STATE_NAME] * 2
        assert all(s.is_failed() for s in down)
        assert len(receiver.posts) == 1, receiver.posts
        assert receiver.posts[0]["subject"] == f"Reflexio server unreachable: {url}"

        with LocalStack(port=port, state_dir=tmp_path):
            back = [stall_watch(**params, return_state=True) for _ in range(2)]
        assert all(s.is_completed() for s in back), [s.message for s in back]
        assert [b["subject"] for b in receiver.posts[1:]] == [
            f"Reflexio server reachable again: {url}"
        ]
    finally:
        Variable.unset(variable_name(url))
