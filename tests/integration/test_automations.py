"""The automations `python -m deployments.setup` creates fire on a real `prefect server start`
(the test harness's ephemeral server runs no automation services).

- A run tagged `reflexio` that times out notifies (the failed-run automation matches
  TimedOut as well as Failed and Crashed).
- The stall-watch silence automation (its window shortened to seconds) stays quiet while
  stall-watch runs complete, and notifies once they stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect import flow, tags
from prefect.automations import Automation
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments import setup
from deployments.catalogue import FLOW_TAG
from local_stack.prefect_server import PrefectServer
from tests.integration.pipeline_helpers import WebhookReceiver

pytestmark = pytest.mark.integration

SILENCE = timedelta(seconds=10)


@pytest.fixture(scope="module")
def real_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"))
    with server, temporary_settings({PREFECT_API_URL: server.api_url}):
        try:
            yield server
        finally:
            # Flush the process-wide event and log workers while this server still runs:
            # left bound to it, they retry it after it stops and pytest never exits.
            EventsWorker.drain_all(timeout=60, at_exit=False)
            APILogWorker.drain_all(timeout=60, at_exit=False)


@pytest.fixture(scope="module")
def hook(real_prefect: PrefectServer) -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        report = setup.run(receiver.url, "custom", reflexio_url="http://127.0.0.1:1")
        assert any(line.endswith("': created") for line in report.lines), report.lines
        yield receiver


@flow(name="reflexio-timeout-probe", timeout_seconds=1)
def slow_run() -> None:
    time.sleep(4)


@flow(name="stall-watch")
def watch_run() -> str:
    return "not stalled"


@pytest.mark.timeout(240)
def test_a_timed_out_run_is_notified(hook: WebhookReceiver):
    with tags(FLOW_TAG):
        state = slow_run(return_state=True)
    assert state.name == "TimedOut"
    post = hook.wait_for("Reflexio pipeline run TimedOut", timeout_s=90)
    assert "reflexio-timeout-probe" in post["body"]


@pytest.mark.slow  # ~55 s of waiting on a proactive trigger; CI runs the timed-out case
@pytest.mark.timeout(240)
def test_the_stall_watch_silence_is_notified_when_its_runs_stop(hook: WebhookReceiver):
    name = "reflexio: stall watch silent"
    block = setup.ensure_notification_block(None, "auto", setup.Report())
    specs = setup.automation_specs(block, stall_watch_silence=SILENCE)
    (short,) = [a for a in specs if a.name == name]
    Automation.read(name=name).delete()
    short.create()

    subject = "Reflexio stall watch is silent"
    busy_until = time.monotonic() + 2.5 * SILENCE.total_seconds()
    while time.monotonic() < busy_until:
        assert watch_run(return_state=True).is_completed()
        assert not [p for p in hook.posts if p.get("subject") == subject], hook.posts
        time.sleep(3)
    hook.wait_for(subject, timeout_s=90)
