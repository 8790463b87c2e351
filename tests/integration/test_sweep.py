"""Manual-generation sweep against the real Reflexio server (stand-in LLM)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flows.params import SweepParams
from flows.sweep import ARTIFACT_KEY, manual_sweep
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings

pytestmark = pytest.mark.integration


def _client(stack: LocalStack) -> ReflexioClient:
    return ReflexioClient(ReflexioSettings(url=stack.url))


@contextmanager
def extractor_config(stack: LocalStack, **changes: Any) -> Iterator[None]:
    """profile_extractor_config with `changes` inside the block, the old object put back
    after it (a config left changed would change every later test's reruns)."""
    with _client(stack) as client:
        pec = client.get_config()["profile_extractor_config"]
        client.update_config({"profile_extractor_config": {**pec, **changes}})
        try:
            yield
        finally:
            client.update_config({"profile_extractor_config": pec})


@pytest.fixture
def manual_trigger_on(seeded_stack: LocalStack) -> Iterator[LocalStack]:
    """profile_extractor_config.manual_trigger true for the test, the old object put back."""
    with extractor_config(seeded_stack, manual_trigger=True):
        yield seeded_stack


def _summary(state: Any) -> dict[str, Any]:
    return state.result(raise_on_failure=False)


@pytest.mark.slow  # CI: test_one_failing_source_does_not_stop_the_others, the sweep fault case
def test_sweep_happy_path_measures_each_step(manual_trigger_on: LocalStack, prefect_api: None):
    stack = manual_trigger_on
    params = SweepParams(
        sources=["chat", "email"],
        agent_versions=["v1"],
        require_manual_trigger=True,
        reflexio_url=stack.url,
        manual_calls_per_minute=120,  # the session stack runs with rate limits off
    )
    with _client(stack) as client:
        # New facts arrive on the EMAIL source; with manual_trigger on, publishing does not
        # extract them. The CHAT step will (H8: source does not filter interactions).
        client.publish_interaction(
            user_id="alice",
            session_id="alice-moves",
            source="email",
            agent_version="v1",
            interactions=[
                {"role": "user", "content": "News: I moved to Lisbon and now learn Portuguese."},
                {"role": "assistant", "content": "Understood, I will keep that in mind."},
            ],
            wait_for_response=True,
        )
        chat_before = len(client.list_profiles("current", source="chat"))

    state = manual_sweep(params=params, return_state=True)

    assert state.is_completed(), state.message
    rows = _summary(state)["steps"]
    assert [(r["source"], r["kind"], r["agent_version"]) for r in rows] == [
        ("chat", "profiles", "-"),
        ("chat", "playbooks", "v1"),
        ("email", "profiles", "-"),
        ("email", "playbooks", "v1"),
    ]
    assert all(r["status"] == "ok" and r["http_429"] == 0 for r in rows)
    chat_profiles = rows[0]
    assert chat_profiles["current_stamped_before"] == chat_before
    assert chat_profiles["added"] > 0
    # H8: everything this step added carries the 'chat' stamp, whatever source it came from.
    assert (
        chat_profiles["current_stamped_after"] - chat_profiles["current_stamped_before"]
        == chat_profiles["added"] - chat_profiles["removed"]
    )

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        artifact = prefect.read_latest_artifacts()
    keys = {a.key for a in artifact}
    assert ARTIFACT_KEY in keys


def test_missing_prerequisite_says_how_and_generates_nothing(stack: LocalStack, prefect_api: None):
    seeded_stack = stack  # writes nothing: no restore needed
    calls_before = dict(seeded_stack.llm.state.calls)
    with _client(seeded_stack) as client:
        stats_before = client.get_profile_statistics()
        assert client.get_config()["profile_extractor_config"]["manual_trigger"] is False

    state = manual_sweep(
        params=SweepParams(
            sources=["chat"], require_manual_trigger=True, reflexio_url=seeded_stack.url
        ),
        return_state=True,
    )

    assert state.is_failed()
    assert "manual_trigger" in state.message
    assert "update_config" in state.message
    assert "'manual_trigger': True" in state.message
    assert dict(seeded_stack.llm.state.calls) == calls_before, "no LLM call may happen"
    with _client(seeded_stack) as client:
        assert client.get_profile_statistics() == stats_before


def test_one_failing_source_does_not_stop_the_others(
    seeded_stack: LocalStack, prefect_api: None, monkeypatch: pytest.MonkeyPatch
):
    """The provider rejects the key during email's playbook turn only (stand-in auth error)."""
    real = ReflexioClient.manual_playbook_generation

    def failing_for_email(self: ReflexioClient, agent_version: str, source: str | None = None):
        seeded_stack.llm.configure(mode="auth_error" if source == "email" else "ok")
        try:
            return real(self, agent_version, source=source)
        finally:
            seeded_stack.llm.configure(mode="ok")

    monkeypatch.setattr(ReflexioClient, "manual_playbook_generation", failing_for_email)

    state = manual_sweep(
        params=SweepParams(
            sources=["email", "chat"],
            kinds=["playbooks"],
            reflexio_url=seeded_stack.url,
            manual_calls_per_minute=120,
        ),
        return_state=True,
    )

    assert state.is_failed()
    assert "email" in state.message and "chat" not in state.message.split("the other")[0]
    rows = {r["source"]: r for r in _summary(state)["steps"]}
    assert rows["email"]["status"] == "failed"
    assert rows["chat"]["status"] == "ok"
    assert _summary(state)["failed_sources"] == ["email"]


def test_unknown_source_in_enabled_list_fails_only_that_source(
    seeded_stack: LocalStack, prefect_api: None
):
    with extractor_config(seeded_stack, request_sources_enabled=["chat"]):
        state = manual_sweep(
            params=SweepParams(
                sources=["chat", "fax"],
                kinds=["profiles"],
                reflexio_url=seeded_stack.url,
                manual_calls_per_minute=120,
            ),
            return_state=True,
        )
    assert state.is_failed()
    assert "fax" in state.message and "request_sources_enabled" in state.message
    rows = {r["source"]: r for r in _summary(state)["steps"]}
    assert rows["chat"]["status"] == "ok" and rows["fax"]["status"] == "failed"


def test_stalled_server_ends_failed_before_generating(stack: LocalStack, prefect_api: None):
    seeded_stack = stack  # writes nothing but the stall row, cleared below
    seeded_stack.set_stall("billing_error")
    calls_before = dict(seeded_stack.llm.state.calls)
    try:
        state = manual_sweep(
            params=SweepParams(
                sources=["chat"],
                reflexio_url=seeded_stack.url,
                notification_block="no-such-block",
            ),
            return_state=True,
        )
    finally:
        seeded_stack.clear_stall()
    assert state.is_failed()
    assert "billing_error" in state.message
    assert dict(seeded_stack.llm.state.calls) == calls_before
