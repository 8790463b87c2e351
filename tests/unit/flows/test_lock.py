"""The per-server lock every writer holds (flows/lock.py), against a throwaway Prefect API.

Servers are loopback URLs where nothing listens: a writer that got past the lock would fail
on its first server call with a connection error, not with the lock's message.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.context import get_run_context
from prefect.states import Completed, Failed, State

from deployments.catalogue import lock_name
from flows import lock
from flows.clear_users import clear_users
from flows.lock import (
    LOCK_BUSY_STATE_NAME,
    LockLost,
    ServerBusy,
    ensure_lock,
    ensure_still_held,
    holds_server_lock,
    lost_reason,
    server_lock,
)
from flows.params import (
    WriterParams,
)
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import PromptCheckResult, Verdict, prompt_change
from flows.restore import restore_profiles
from flows.sweep import manual_sweep
from tests.prefect_stubs import held_elsewhere

_PORTS = itertools.count(901)


@pytest.fixture
def url() -> str:
    """A server of this test alone (its own lock name); nothing listens there."""
    return f"http://127.0.0.1:{next(_PORTS)}"


def _active_slots(url: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(lock_name(url)).active_slots


def test_two_spellings_of_one_server_have_one_lock():
    assert lock_name("http://127.0.0.1:8081") == "reflexio-lock-127-0-0-1-8081"
    for spelling in ("http://localhost:8081/", "http://LOCALHOST:8081/api", "http://[::1]:8081"):
        assert lock_name(spelling) == lock_name("http://127.0.0.1:8081")
    assert lock_name("https://rx.example.com") == lock_name("https://RX.example.com:443/")
    assert lock_name("http://127.0.0.1:8082") != lock_name("http://127.0.0.1:8081")


def test_a_second_writer_waits_then_is_refused_naming_the_lock(prefect_api, url):
    with held_elsewhere(url):
        started = time.monotonic()
        with pytest.raises(ServerBusy) as refused, server_lock(url, 1.5):
            pytest.fail("two writers held one server's lock")
        waited = time.monotonic() - started
    assert 1.5 <= waited < 10, waited
    message = str(refused.value)
    assert f"holds its lock '{lock_name(url)}'" in message and url in message
    assert "Nothing was written" in message and "Run again when that run has finished" in message


def test_a_waiting_writer_gets_the_lock_once_it_is_freed(prefect_api, url):
    with held_elsewhere(url, hold_s=1.0):
        started = time.monotonic()
        with server_lock(url, 30) as held:
            waited = time.monotonic() - started
            assert held.lost is None and _active_slots(url) == 1
    assert 0.5 <= waited < 30, waited
    assert _active_slots(url) == 0


def test_the_lock_is_reentrant_for_its_holder_only(prefect_api, url):
    other_spelling = url.replace("127.0.0.1", "localhost") + "/"
    refused: list[BaseException] = []

    def other_writer() -> None:  # a new thread starts with an empty context: not the holder
        try:
            with server_lock(url, 0.5):
                pass
        except ServerBusy as exc:
            refused.append(exc)

    with server_lock(url, 5) as outer:
        with server_lock(other_spelling, 0.01) as inner:  # would time out if it waited
            assert inner is outer
            assert _active_slots(url) == 1
        assert _active_slots(url) == 1  # the inner exit did not free the outer hold
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(30)
    assert len(refused) == 1
    assert _active_slots(url) == 0


def test_a_failed_writer_frees_the_lock(prefect_api, url):
    with pytest.raises(RuntimeError, match="boom"), server_lock(url, 5):
        raise RuntimeError("boom")
    assert _active_slots(url) == 0


def _renewals(monkeypatch: pytest.MonkeyPatch, fail: Callable[[], Exception]) -> list[float]:
    """Renew every 50 ms, each renewal failing with `fail()`; returns the attempt times."""
    attempts: list[float] = []

    def renew(self: SyncPrefectClient, lease_id: object, lease_duration: float) -> None:
        attempts.append(time.monotonic())
        raise fail()

    monkeypatch.setattr(lock, "RENEW_EVERY_S", 0.05)
    monkeypatch.setattr(SyncPrefectClient, "renew_concurrency_lease", renew)
    return attempts


def _work(steps: int = 10) -> list[int]:
    """The work done under the lock: it must run to its end."""
    done = []
    for step in range(steps):
        time.sleep(0.05)
        done.append(step)
    return done


def test_a_transient_renewal_failure_never_interrupts_the_work(prefect_api, url, monkeypatch):
    attempts = _renewals(monkeypatch, lambda: httpx.ConnectError("Prefect API down"))
    with server_lock(url, 5) as held:  # a BaseException here would fail the test
        done = _work()
    assert len(attempts) >= 3, "the renewal was never tried"
    assert done == list(range(10))
    assert held.lost is None  # within the 60 s lease, the slot is still ours
    assert _active_slots(url) == 0


def test_a_lost_lease_is_reported_and_the_work_goes_on(prefect_api, url, monkeypatch):
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/leases/x/renew")
    gone = httpx.HTTPStatusError("gone", request=request, response=httpx.Response(410))
    _renewals(monkeypatch, lambda: gone)
    with server_lock(url, 5) as held:
        done = _work()
    assert done == list(range(10))
    assert held.lost is not None and "expired or was revoked" in held.lost
    assert lock_name(url) in held.lost_message() and "was lost" in held.lost_message()


def test_a_writer_flow_whose_lock_was_lost_finishes_and_says_so(prefect_api, url, monkeypatch):
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/leases/x/renew")
    gone = httpx.HTTPStatusError("gone", request=request, response=httpx.Response(410))
    _renewals(monkeypatch, lambda: gone)

    @flow(name="test-writer")
    @holds_server_lock
    def writer(params: WriterParams) -> State:
        _work()
        return Completed(message="Wrote and verified.")

    state = writer(WriterParams(reflexio_url=url), return_state=True)
    assert state.is_completed(), state.message
    assert state.message.startswith("Wrote and verified.")
    assert f"The server lock '{lock_name(url)}' was lost" in state.message


@pytest.mark.parametrize("caught_by_the_body", [False, True])
def test_a_writer_stopped_by_a_lost_lock_fails_saying_it_stopped(
    prefect_api, url, monkeypatch, caught_by_the_body: bool
):
    """Whether the body lets LockLost through (clear-user-data, the sweep) or turns it into
    its own Failed state (restore), the run fails, says it stopped before a write, and does
    not also claim it went on to finish its checks."""
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/leases/x/renew")
    gone = httpx.HTTPStatusError("gone", request=request, response=httpx.Response(410))
    _renewals(monkeypatch, lambda: gone)
    writes: list[int] = []

    @flow(name="test-stopped-writer")
    @holds_server_lock
    def writer(params: WriterParams) -> State:
        for step in range(200):
            time.sleep(0.05)
            try:
                ensure_still_held(url)
            except LockLost as exc:
                if caught_by_the_body:
                    return Failed(message=f"Restore stopped: {exc}")
                raise
            writes.append(step)
        return Completed(message="Wrote everything.")

    state = writer(WriterParams(reflexio_url=url), return_state=True)
    assert state.is_failed(), state.message
    first = "Restore stopped: Stopped before a write" if caught_by_the_body else "Stopped before"
    assert state.message.startswith(first), state.message  # not a traceback
    assert "went on and finished" not in state.message
    assert len(writes) < 200
    assert _active_slots(url) == 0


def test_the_lease_names_the_flow_run_that_holds_it(prefect_api, url, monkeypatch):
    sent: list[object] = []
    increment = SyncPrefectClient.increment_concurrency_slots_with_lease

    def spy(self: SyncPrefectClient, *args: object, **kwargs: object) -> httpx.Response:
        sent.append(kwargs.get("holder"))
        return increment(self, *args, **kwargs)  # the real call: the API accepts the holder

    monkeypatch.setattr(SyncPrefectClient, "increment_concurrency_slots_with_lease", spy)

    @flow(name="test-holder")
    def writer() -> str:
        with server_lock(url, 5):
            return str(get_run_context().flow_run.id)  # type: ignore[union-attr]

    state = writer(return_state=True)
    run_id = state.result()
    (holder,) = sent
    assert holder is not None and (holder.type, str(holder.id)) == ("flow_run", run_id)
    with server_lock(url, 5):  # outside a flow run there is no holder to name
        pass
    assert sent[-1] is None


def test_lost_reason():
    request = httpx.Request("POST", "http://prefect/api")
    gone = httpx.HTTPStatusError("gone", request=request, response=httpx.Response(410))
    down = httpx.ConnectError("down")
    assert lost_reason(gone, 1) is not None
    assert lost_reason(down, 59, lease_s=60) is None
    reason = lost_reason(down, 61, lease_s=60)
    assert reason is not None and "60 s lease" in reason and "ConnectError" in reason


def test_ensure_lock_creates_once_and_puts_back_one_active_slot(prefect_api, url):
    name = lock_name(url)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_lock(name))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["created", "exists"]
    other = lock_name(f"{url}1")
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=other, limit=3, active=False)
        )
    assert ensure_lock(other) == "set back to 1 active slot"
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(other)
    assert limit.active and limit.limit == 1
    assert ensure_lock(other) == "exists"


CANDIDATE = "profile_extractor_config:\n  extraction_prompt: be brief\n"


WRITERS: dict[str, Callable[[str, Path], State]] = {
    "profile-regeneration": lambda url, tmp: profile_regeneration(
        reflexio_url=url,
        backup_dir=tmp,
        lock_timeout_s=0.5,
        return_state=True,
    ),
    "playbook-regeneration": lambda url, tmp: playbook_regeneration(
        reflexio_url=url,
        backup_dir=tmp,
        lock_timeout_s=0.5,
        return_state=True,
    ),
    "restore-profiles": lambda url, tmp: restore_profiles(
        reflexio_url=url,
        backup_file=tmp / "b.json",
        lock_timeout_s=0.5,
        return_state=True,
    ),
    "clear-user-data": lambda url, tmp: clear_users(
        reflexio_url=url,
        user_ids=["alice"],
        lock_timeout_s=0.5,
        return_state=True,
    ),
    "manual-generation-sweep": lambda url, tmp: manual_sweep(
        reflexio_url=url, sources=["chat"], lock_timeout_s=0.5, return_state=True
    ),
    "prompt-change": lambda url, tmp: prompt_change(
        reflexio_url=url,
        candidate_config=CANDIDATE,
        backup_dir=tmp,
        lock_timeout_s=0.5,
        return_state=True,
    ),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_is_refused_while_another_holds_the_lock(prefect_api, url, tmp_path, writer):
    other_spelling = url.replace("127.0.0.1", "localhost")
    with held_elsewhere(url):
        state = WRITERS[writer](other_spelling, tmp_path)
    assert state.is_failed(), state.message
    assert state.name == LOCK_BUSY_STATE_NAME  # not "Failed": the failed-run automation is quiet
    assert f"holds its lock '{lock_name(url)}'" in state.message, state.message
    assert "Nothing was written" in state.message
    if writer == "prompt-change":
        result = state.result(raise_on_failure=False)
        assert isinstance(result, PromptCheckResult) and result.verdict is Verdict.BUSY
    if writer in ("profile-regeneration", "playbook-regeneration", "prompt-change"):
        with get_client(sync_client=True) as client:  # as another process reads it
            stored = client.read_flow_run(state.state_details.flow_run_id).state
        assert stored.name == LOCK_BUSY_STATE_NAME
        assert stored.result(raise_on_failure=False).message == state.message  # persisted
