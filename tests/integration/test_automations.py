"""The automations `python -m deployments.setup` creates fire on a real `prefect server start`
(the test harness's ephemeral server runs no automation services).

- A run tagged `reflexio` that times out notifies (the failed-run automation matches
  TimedOut as well as Failed and Crashed).
- The playbook nightly starts from the profile nightly's Completed event (the chain
  automation, matched by deployment id), and from nothing else: not a failed or dry run,
  not a Completed run of another flow's deployment of the same name.
- A sweep refused by a busy lock ends LockBusy, and no notification is sent.
- A stall watch through a slow outage (a server that accepts and never answers) ends
  Unreachable each run and notifies once.
- The stall-watch silence automation (its window shortened to seconds) stays quiet while
  runs of its deployment complete, and notifies once they stop (slow).

"No notification" is proven against a control: a failed run started after the quiet one
must be notified first, so the automation was live and had the quiet run's events.

The deployments are stubs (tests/prefect_stubs.py): their runs are moved through their
states on the real API, which emits the events a worker's run would; the sweep and the stall
watch are the real flows, run in this process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from prefect import flow, tags
from prefect.automations import Automation
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed
from prefect.variables import Variable

from deployments import setup
from deployments.catalogue import (
    FLOW_TAG,
    PLAYBOOK_NIGHTLY,
    PROFILE_NIGHTLY,
    STALL_WATCH_DEPLOYMENT,
    lock_name,
)
from flows.lock import LOCK_BUSY_STATE_NAME
from flows.stall_watch import UNREACHABLE_STATE_NAME, stall_watch, variable_name
from flows.sweep import manual_sweep
from local_stack.prefect_server import PrefectServer, free_port
from tests.integration.pipeline_helpers import WebhookReceiver
from tests.prefect_stubs import deploy_stub, end_run_of, held_elsewhere, runs_of

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


@flow(name="reflexio-failure-probe")
def failing_run() -> None:
    raise RuntimeError("control: this run fails on purpose")


def control_failure(hook: WebhookReceiver) -> None:
    """A tagged run fails and its own notification arrives: the events before it were
    processed."""
    name = f"control-{uuid.uuid4().hex[:8]}"
    with tags(FLOW_TAG):
        assert failing_run.with_options(flow_run_name=name)(return_state=True).is_failed()
    deadline = time.monotonic() + 90
    while not [p for p in failure_posts(hook) if name in str(p.get("body"))]:
        assert time.monotonic() < deadline, f"the control run's alert never came: {hook.posts}"
        time.sleep(0.5)


def failure_posts(hook: WebhookReceiver) -> list[dict]:
    """The failed-run automation's notifications."""
    return [p for p in hook.posts if str(p.get("subject")).startswith("Reflexio pipeline run")]


@pytest.mark.timeout(240)
def test_a_timed_out_run_is_notified(hook: WebhookReceiver):
    with tags(FLOW_TAG):
        state = slow_run(return_state=True)
    assert state.name == "TimedOut"
    post = hook.wait_for("Reflexio pipeline run TimedOut", timeout_s=90)
    assert "reflexio-timeout-probe" in post["body"]


@pytest.mark.timeout(240)
def test_the_playbook_nightly_starts_from_the_profile_nightlys_completed_event(
    hook: WebhookReceiver,
):
    profiles, playbooks = deploy_stub(PROFILE_NIGHTLY), deploy_stub(PLAYBOOK_NIGHTLY)
    namesake = deploy_stub("another-flow/nightly")  # same deployment name, another flow
    report = setup.run(None, reflexio_url="http://127.0.0.1:1")  # after deploying
    assert f"automation '{setup.PLAYBOOKS_AFTER_PROFILES}': created" in report.lines

    end_run_of(profiles, Failed())
    end_run_of(profiles, Completed(name="DryRun"))
    end_run_of(namesake, Completed())
    end_run_of(profiles, Completed())
    deadline = time.monotonic() + 90
    while not runs_of(playbooks) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(5)  # anything the earlier runs started would have arrived with it
    assert len(runs_of(playbooks)) == 1, "one run, started by the Completed run alone"


@pytest.mark.timeout(240)
def test_a_sweep_refused_by_a_busy_lock_ends_lockbusy_and_notifies_nobody(
    hook: WebhookReceiver,
):
    url = f"http://127.0.0.1:{free_port()}"  # the lock is all the sweep reaches
    with held_elsewhere(url), tags(FLOW_TAG):
        state = manual_sweep(
            reflexio_url=url, sources=["chat"], lock_timeout_s=1, return_state=True
        )
    assert state.is_failed() and state.name == LOCK_BUSY_STATE_NAME, state
    assert f"holds its lock '{lock_name(url)}'" in state.message
    before = len(failure_posts(hook))
    control_failure(hook)
    assert [p for p in failure_posts(hook)[before:] if "LockBusy" in str(p)] == []
    assert len(failure_posts(hook)) == before + 1  # the control's alone


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers; its URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.timeout(240)
def test_a_stall_watch_through_a_slow_outage_ends_unreachable_and_notifies_once(
    hook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
):
    """Each read times out (1 s here, so the test is short; the deployment's own budget is
    checked in tests/unit/deployments/test_prefect_yaml.py) through every retry."""
    monkeypatch.setenv("REFLEXIO_READ_TIMEOUT_S", "1")
    with silent_server() as url, tags(FLOW_TAG):
        Variable.unset(variable_name(url))
        runs = [stall_watch(reflexio_url=url, return_state=True) for _ in range(2)]
    assert [(s.type.value, s.name) for s in runs] == [("FAILED", UNREACHABLE_STATE_NAME)] * 2
    assert "timed out (ReadTimeout)" in runs[0].message, runs[0].message
    before = len(failure_posts(hook))
    control_failure(hook)
    unreachable = [
        p for p in hook.posts if p.get("subject") == f"Reflexio server unreachable: {url}"
    ]
    assert len(unreachable) == 1, hook.posts
    assert len(failure_posts(hook)) == before + 1  # no TimedOut or Failed alert for the watch


@pytest.mark.slow  # ~55 s of waiting on a proactive trigger; CI runs the timed-out case
@pytest.mark.timeout(240)
def test_the_stall_watch_silence_is_notified_when_its_runs_stop(hook: WebhookReceiver):
    name = "reflexio: stall watch silent"
    watch = deploy_stub(STALL_WATCH_DEPLOYMENT)
    block = setup.ensure_notification_block(None, "auto", setup.Report())
    specs = setup.automation_specs(block, {STALL_WATCH_DEPLOYMENT: watch}, SILENCE)
    (short,) = [a for a in specs if a.name == name]
    with contextlib.suppress(ValueError):
        Automation.read(name=name).delete()
    short.create()

    subject = "Reflexio stall watch is silent"
    busy_until = time.monotonic() + 2.5 * SILENCE.total_seconds()
    while time.monotonic() < busy_until:
        end_run_of(watch, Completed())
        assert not [p for p in hook.posts if p.get("subject") == subject], hook.posts
        time.sleep(3)
    hook.wait_for(subject, timeout_s=90)
