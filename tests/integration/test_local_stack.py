"""The local default itself: the real server answers, the stand-in is steerable over HTTP,
and the stall helper writes what the server then reports (H7)."""

import httpx
import pytest

from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.conftest import SEEDED

pytestmark = pytest.mark.integration

HEADERS = {"User-Agent": "reflexio-pipelines-tests/0.1"}


def test_server_is_ready_and_seeded(stack: LocalStack) -> None:
    assert httpx.get(f"{stack.url}/health", timeout=5).status_code == 200
    stats = httpx.get(f"{stack.url}/api/get_profile_statistics", headers=HEADERS).json()
    assert stats["current_count"] > 0
    assert stats["pending_count"] == 0


def test_stand_in_is_steerable_over_http(stack: LocalStack) -> None:
    control = f"{stack.llm.base_url}/_control"
    try:
        state = httpx.post(control, json={"mode": "auth_error", "delay_s": 0.1}).json()
        assert state["mode"] == "auth_error"
        assert stack.llm.state.delay_s == 0.1
        bad = httpx.post(control, json={"colour": "blue"})
        assert bad.status_code == 400
        assert "unknown stand-in setting 'colour'" in bad.json()["error"]
    finally:
        stack.llm.reset()
    assert stack.llm.state.mode == "ok"


def test_stall_helper_sets_what_the_server_reports(stack: LocalStack) -> None:
    try:
        stack.set_stall("billing_error", "quota exhausted")
        state = httpx.get(f"{stack.url}/stall_state", headers=HEADERS).json()
        assert state["stalled"] is True
        assert state["reason"] == "billing_error"
        assert state["notified_in_cc"] is False
    finally:
        stack.clear_stall()
    state = httpx.get(f"{stack.url}/stall_state", headers=HEADERS).json()
    assert state["stalled"] is False


def test_restore_puts_back_the_config_as_well_as_the_data(seeded_stack: LocalStack) -> None:
    """The config file lives outside the data folder; a test that changes it must not leak
    the change into the next test."""
    with ReflexioClient(ReflexioSettings(url=seeded_stack.url)) as client:
        window_before = client.get_config()["window_size"]
        client.update_config({"window_size": window_before + 7})
        assert client.get_config()["window_size"] == window_before + 7
    seeded_stack.restore(SEEDED)
    with ReflexioClient(ReflexioSettings(url=seeded_stack.url)) as client:
        assert client.get_config()["window_size"] == window_before
