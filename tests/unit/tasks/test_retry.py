"""Transient faults (5xx, 429) are retried by the tasks; auth (401) and bad requests are not."""

from __future__ import annotations

import httpx
import pytest
from prefect import flow
from prefect.states import Failed

import tasks.server as server
from reflexio_api import AuthError, ReflexioClient, ReflexioSettings, TransientError
from tasks.retry import honour_retry_after, retry_transient, retry_unless_maybe_applied

STALL_OK = {
    "stalled": False,
    "reason": None,
    "stalled_at": None,
    "reset_estimate": None,
    "notified_in_cc": False,
    "error_message": None,
}


def failed_with(exc: BaseException):
    return Failed(data=exc)


def test_condition_retries_transient_only():
    assert retry_transient(None, None, failed_with(TransientError("503", status_code=503)))
    assert not retry_transient(None, None, failed_with(AuthError("401", status_code=401)))
    assert not retry_transient(None, None, failed_with(ValueError("bad")))


def test_writes_are_not_retried_blindly_when_maybe_applied():
    sent = TransientError("read timeout", maybe_applied=True)
    refused = TransientError("connect refused", maybe_applied=False)
    assert not retry_unless_maybe_applied(None, None, failed_with(sent))
    assert retry_unless_maybe_applied(None, None, failed_with(refused))
    assert not retry_unless_maybe_applied(None, None, failed_with(AuthError("x", status_code=401)))


def test_retry_after_is_slept_before_reraising():
    slept: list[float] = []
    with pytest.raises(TransientError), honour_retry_after(limit_s=5, sleep=slept.append):
        raise TransientError("429", status_code=429, retry_after=3)
    with pytest.raises(TransientError), honour_retry_after(limit_s=5, sleep=slept.append):
        raise TransientError("429", status_code=429, retry_after=999)
    assert slept == [3, 5]


def _mock(monkeypatch, answers: list[httpx.Response]) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    def client(settings: ReflexioSettings) -> ReflexioClient:
        return ReflexioClient(settings, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(server, "_client", client)
    return seen


def _run_stall_task():
    fast = server.read_stall_state.with_options(retry_delay_seconds=0, retry_jitter_factor=None)

    @flow
    def probe() -> tuple[bool, str | None]:
        state = fast(ReflexioSettings(url="http://127.0.0.1:9"), return_state=True)
        if state.is_completed():
            return True, None
        try:
            state.result()
        except Exception as exc:
            return False, type(exc).__name__
        return False, None

    return probe()


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(503, json={"detail": "down"}),
        httpx.Response(429, json={"error": "Rate limit exceeded"}, headers={"Retry-After": "0"}),
    ],
)
def test_task_retries_transient_faults(prefect_api, monkeypatch, fault):
    seen = _mock(monkeypatch, [fault, fault, httpx.Response(200, json=STALL_OK)])
    assert _run_stall_task() == (True, None)
    assert len(seen) == 3


def test_task_does_not_retry_auth_errors(prefect_api, monkeypatch):
    seen = _mock(monkeypatch, [httpx.Response(401, json={"detail": "bad key"})])
    assert _run_stall_task() == (False, "AuthError")
    assert len(seen) == 1


def _run_upgrade(pending_before: int):
    @flow
    def probe() -> tuple[bool, object]:
        state = server.upgrade_profiles.with_options(
            retry_delay_seconds=0, retry_jitter_factor=None
        )(ReflexioSettings(url="http://127.0.0.1:9"), True, pending_before, return_state=True)
        if state.is_completed():
            return True, state.result()
        try:
            state.result()
        except Exception as exc:
            return False, type(exc).__name__
        return False, None

    return probe()


STATS_DONE = {"success": True, "current_count": 4, "pending_count": 0, "archived_count": 3}
STATS_NOT_DONE = {"success": True, "current_count": 3, "pending_count": 4, "archived_count": 0}
UPGRADED = {
    "success": True,
    "profiles_archived": 3,
    "profiles_promoted": 4,
    "profiles_deleted": 0,
    "message": "Upgraded",
}


def test_upgrade_answer_lost_but_applied_is_not_repeated(prefect_api, monkeypatch):
    seen = _mock(monkeypatch, [httpx.Response(502, json={}), httpx.Response(200, json=STATS_DONE)])
    ok, result = _run_upgrade(pending_before=4)
    assert ok and result["promoted"] is None and "applied" in result["message"]
    assert [r.url.path for r in seen] == [
        "/api/upgrade_all_profiles",
        "/api/get_profile_statistics",
    ]


def test_upgrade_that_surely_did_not_apply_is_sent_again(prefect_api, monkeypatch):
    monkeypatch.setattr(server, "SETTLE_INTERVAL_S", 0)
    not_done = [httpx.Response(200, json=STATS_NOT_DONE)] * 3
    seen = _mock(
        monkeypatch,
        [httpx.Response(502, json={}), *not_done, httpx.Response(200, json=UPGRADED)],
    )
    ok, result = _run_upgrade(pending_before=4)
    assert ok and result["profiles_promoted"] == 4
    paths = [r.url.path for r in seen]
    assert paths.count("/api/upgrade_all_profiles") == 2
    assert paths.count("/api/get_profile_statistics") == 3  # quiet reads before resending


def test_upgrade_still_running_is_waited_for(prefect_api, monkeypatch):
    monkeypatch.setattr(server, "SETTLE_INTERVAL_S", 0)
    busy = httpx.Response(504, json={"detail": "Request timeout"})
    seen = _mock(
        monkeypatch,
        [httpx.Response(504, json={}), busy, busy, httpx.Response(200, json=STATS_DONE)],
    )
    ok, result = _run_upgrade(pending_before=4)
    assert ok and "applied" in result["message"]
    assert [r.url.path for r in seen].count("/api/upgrade_all_profiles") == 1  # never resent


def _slot(operation_id: str, status: str = "completed") -> httpx.Response:
    body = {
        "service_name": "profile_generation",
        "status": status,
        "started_at": 1,
        "request_params": {"operation_id": operation_id},
    }
    return httpx.Response(200, json={"success": True, "operation_status": body})


def _run_rerun_start():
    @flow
    def probe() -> str:
        return server.start_profile_rerun.with_options(
            retry_delay_seconds=0, retry_jitter_factor=None
        )(ReflexioSettings(url="http://127.0.0.1:9"), None, None, None)

    return probe()


def test_a_rerun_whose_answer_was_lost_but_started_is_waited_on_not_sent_again(
    prefect_api, monkeypatch
):
    seen = _mock(monkeypatch, [_slot("op-old"), httpx.Response(502, json={}), _slot("op-new")])
    assert _run_rerun_start() == "op-new"
    assert [r.url.path for r in seen].count("/api/rerun_profile_generation") == 1


def test_a_rerun_that_surely_did_not_start_is_sent_again(prefect_api, monkeypatch):
    monkeypatch.setattr(server, "START_CHECK_INTERVAL_S", 0)
    started = httpx.Response(200, json={"success": True, "operation_id": "op-new"})
    seen = _mock(
        monkeypatch,
        [
            _slot("op-old"),
            httpx.Response(502, json={}),
            *[_slot("op-old")] * server.START_CHECKS,
            _slot("op-old"),
            started,
        ],
    )
    assert _run_rerun_start() == "op-new"
    paths = [r.url.path for r in seen]
    assert paths.count("/api/rerun_profile_generation") == 2
    assert paths.count("/api/get_operation_status") == 2 + server.START_CHECKS


def test_a_failed_read_before_the_rerun_is_retried_and_the_rerun_sent_once(
    prefect_api, monkeypatch
):
    started = httpx.Response(200, json={"success": True, "operation_id": "op-new"})
    seen = _mock(monkeypatch, [httpx.Response(502, json={}), _slot("op-old"), started])
    assert _run_rerun_start() == "op-new"
    assert [r.url.path for r in seen].count("/api/rerun_profile_generation") == 1
