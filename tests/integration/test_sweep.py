"""Manual-generation sweep against the real Reflexio server (stand-in LLM)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from flows.clear_users import clear_users
from flows.sweep import ARTIFACT_KEY, PrefectSweepOps, manual_sweep
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.journal import load_journal
from tasks.sweep import StepResult

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


def _alice_moves(client: ReflexioClient, source: str) -> None:
    """Alice tells the agent new facts on `source` (extracted on publish only when
    manual_trigger is off)."""
    client.publish_interaction(
        user_id="alice",
        session_id="alice-moves",
        source=source,
        agent_version="v1",
        interactions=[
            {"role": "user", "content": "News: I moved to Lisbon and now learn Portuguese."},
            {"role": "assistant", "content": "Understood, I will keep that in mind."},
        ],
        wait_for_response=True,
    )


def _summary(state: Any) -> dict[str, Any]:
    return state.result(raise_on_failure=False)


@pytest.mark.slow  # CI: test_one_failing_source_does_not_stop_the_others, the sweep fault case
def test_sweep_happy_path_measures_each_step(manual_trigger_on: LocalStack, prefect_api: None):
    stack = manual_trigger_on
    params = dict(
        sources=["chat", "email"],
        agent_versions=["v1"],
        require_manual_trigger=True,
        reflexio_url=stack.url,
        manual_calls_per_minute=120,  # the session stack runs with rate limits off
    )
    with _client(stack) as client:
        # New facts arrive on the EMAIL source; with manual_trigger on, publishing does not
        # extract them. The CHAT step will (H8: source does not filter interactions).
        _alice_moves(client, "email")
        chat_before = len(client.list_profiles("current", source="chat"))

    state = manual_sweep(**params, return_state=True)

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
    calls_before = seeded_stack.llm.state.run_calls()
    with _client(seeded_stack) as client:
        stats_before = client.get_profile_statistics()
        assert client.get_config()["profile_extractor_config"]["manual_trigger"] is False

    state = manual_sweep(
        sources=["chat"],
        require_manual_trigger=True,
        reflexio_url=seeded_stack.url,
        return_state=True,
    )

    assert state.is_failed()
    assert "manual_trigger" in state.message
    assert "update_config" in state.message
    assert "'manual_trigger': True" in state.message
    assert seeded_stack.llm.state.run_calls() == calls_before, "no LLM call may happen"
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
        sources=["email", "chat"],
        kinds=["playbooks"],
        reflexio_url=seeded_stack.url,
        manual_calls_per_minute=120,
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
            sources=["chat", "fax"],
            kinds=["profiles"],
            reflexio_url=seeded_stack.url,
            manual_calls_per_minute=120,
            return_state=True,
        )
    assert state.is_failed()
    assert "fax" in state.message and "request_sources_enabled" in state.message
    rows = {r["source"]: r for r in _summary(state)["steps"]}
    assert rows["chat"]["status"] == "ok" and rows["fax"]["status"] == "failed"


def test_stalled_server_ends_failed_before_generating(stack: LocalStack, prefect_api: None):
    seeded_stack = stack  # writes nothing but the stall row, cleared below
    seeded_stack.set_stall("billing_error")
    calls_before = seeded_stack.llm.state.run_calls()
    try:
        state = manual_sweep(
            sources=["chat"],
            reflexio_url=seeded_stack.url,
            notification_block="no-such-block",
            return_state=True,
        )
    finally:
        seeded_stack.clear_stall()
    assert state.is_failed()
    assert "billing_error" in state.message
    assert seeded_stack.llm.state.run_calls() == calls_before


def test_a_sweep_that_dies_after_its_first_source_is_finished_by_the_next_writer(
    manual_trigger_on: LocalStack,
    prefect_api: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    """The sweep dies as its second source's step starts (journaled as sent, never sent);
    the next writer, a clear-user-data run of a user with no data, finishes it first: only
    the email step runs, and what it makes carries the email stamp (had the chat step run
    again first, the new facts would carry chat's). The unit tests
    (tests/unit/flows/test_sweep_journal.py) cover the generation left running."""
    stack = manual_trigger_on
    sent: list[str | None] = []
    real_generation = ReflexioClient.manual_profile_generation

    def recorded(self: ReflexioClient, user_id: str | None = None, source: str | None = None):
        sent.append(source)
        return real_generation(self, user_id=user_id, source=source)

    monkeypatch.setattr(ReflexioClient, "manual_profile_generation", recorded)
    real_step = PrefectSweepOps.generate

    def dies_on_email(self: PrefectSweepOps, step: StepResult, spacing_s: float) -> StepResult:
        if step.source == "email":
            raise RuntimeError("the sweep's process died here")
        return real_step(self, step, spacing_s)

    params = dict(
        sources=["chat", "email"],
        kinds=["profiles"],
        reflexio_url=stack.url,
        manual_calls_per_minute=120,  # the session stack runs with rate limits off
    )
    with monkeypatch.context() as dying:
        dying.setattr(PrefectSweepOps, "generate", dies_on_email)
        assert manual_sweep(**params, return_state=True).is_failed()
    assert sent == ["chat"]
    journal = load_journal(stack.url)
    assert journal is not None and journal.kind == "sweep"
    assert (journal.swept, journal.sweeping) == (("chat/profiles/",), "email/profiles/")

    with _client(stack) as client:  # a user teaches something new meanwhile
        _alice_moves(client, "chat")
        before = {p.profile_id for p in client.list_profiles("current")}

    state = clear_users(
        user_ids=["nobody-has-this-id"],
        records_dir=str(tmp_path),
        reflexio_url=stack.url,
        return_state=True,
    )

    assert state.is_completed(), state.message
    assert state.message.startswith("Repaired an unfinished manual-generation-sweep")
    assert sent == ["chat", "email"]  # the repair sent the email step only
    with _client(stack) as client:
        made = [p for p in client.list_profiles("current") if p.profile_id not in before]
    assert made, "the email step extracts the new facts"
    assert {p.source for p in made} == {"email"}
    assert load_journal(stack.url) is None
