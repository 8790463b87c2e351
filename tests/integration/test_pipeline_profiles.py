"""Profile regeneration flow against the real Reflexio server and a Prefect test API."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from core.backup import open_backup
from core.kinds import PROFILE_KEYS, PROFILES, comparable
from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import (
    WebhookReceiver,
    profile_rows,
    run_backup,
    save_webhook_block,
)

pytestmark = pytest.mark.integration


def _backup_rows(directory: Path) -> list[dict]:
    return list(open_backup(run_backup(directory, "profiles")).iter_rows())


def _stats(url: str):
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return client.get_profile_statistics()


@pytest.fixture
def hook(prefect_api):
    with WebhookReceiver() as receiver:
        receiver.block = save_webhook_block(receiver.url)
        yield receiver


def test_happy_path_replaces_current_and_backs_up(seeded_stack, prefect_api, hook, tmp_path: Path):
    url = seeded_stack.url
    before = profile_rows(url, "current", "archived")
    params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_completed(), state.message
    after_current = profile_rows(url, "current")
    assert {r["profile_id"] for r in after_current}.isdisjoint({r["profile_id"] for r in before})
    assert _stats(url).pending_count == 0
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED
    assert outcome.backup in state.message
    assert comparable(_backup_rows(tmp_path), PROFILE_KEYS) == comparable(before, PROFILE_KEYS)
    assert outcome.touched.promoted == len(after_current)
    prefix = PROFILES.artifact_prefix(url)
    with get_client(sync_client=True) as client:
        for key in ("gate-report", "gate-checks", "summary", "progress"):
            found = client.read_artifacts(
                artifact_filter=__import__(
                    "prefect.client.schemas.filters", fromlist=["x"]
                ).ArtifactFilter(key={"any_": [f"{prefix}-{key}"]})
            )
            assert found, key
    assert hook.posts == []


def _ids(url: str, status: str) -> set[str]:
    return {r["profile_id"] for r in profile_rows(url, status)}


def test_gate_rejection_leaves_current_untouched(seeded_stack, prefect_api, hook, tmp_path):
    url = seeded_stack.url
    current = _ids(url, "current")
    seeded_stack.llm.configure(style="junk")
    params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_failed()
    assert "Gate verdict FAIL" in state.message and "CURRENT untouched" in state.message
    assert _ids(url, "current") == current
    assert _stats(url).pending_count == 0  # the candidate was discarded (H5)
    assert state.result(raise_on_failure=False).decision is Decision.GATE_BLOCKED


def test_stall_stops_before_any_write_and_notifies_once(seeded_stack, prefect_api, hook, tmp_path):
    url = seeded_stack.url
    seeded_stack.set_stall("auth_error", "provider said 401")
    calls = seeded_stack.llm.state.run_calls()
    stats = _stats(url)
    params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block)
    for _ in range(2):
        state = profile_regeneration(**params, return_state=True)
        assert state.is_failed() and state.name == "Stalled"
        assert state.message.startswith("Learning is stalled: auth_error")
    assert seeded_stack.llm.state.run_calls() == calls
    assert _stats(url) == stats
    assert len(hook.posts) == 1
    assert "auth_error" in hook.posts[0]["subject"]
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        assert client.get_stall_state().notified_in_cc


def test_llm_auth_error_during_rerun_is_caught_before_upgrade(
    seeded_stack, prefect_api, hook, tmp_path
):
    from prefect.variables import Variable

    from tasks.stall import _variable_name

    url = seeded_stack.url
    Variable.unset(_variable_name(ReflexioSettings(url=url)))
    current = _ids(url, "current")
    seeded_stack.llm.configure(mode="auth_error")
    params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_failed() and state.name == "Stalled"
    assert state.message.startswith("Learning is stalled: no_output (inferred")
    assert _ids(url, "current") == current
    assert _stats(url).pending_count == 0
    assert len(hook.posts) == 1
    again = profile_regeneration(**params, return_state=True)
    assert again.is_failed() and "already notified" in again.message
    assert len(hook.posts) == 1


def test_stale_pending_is_refused_then_discarded_on_request(
    seeded_stack, prefect_api, hook, tmp_path
):
    url = seeded_stack.url
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        op = client.rerun_profile_generation(user_id="alice")
        client.wait_for_operation("profile_generation", op.operation_id, 120)
    stale = _ids(url, "pending")
    assert stale
    params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_failed() and "already PENDING" in state.message
    assert "discard_stale_pending=True" in state.message
    assert _ids(url, "pending") == stale
    params = {**params, "discard_stale_pending": True, "dry_run": True}
    state = profile_regeneration(**params, return_state=True)
    assert state.is_completed(), state.message
    assert "Dry run" in state.message
    assert _stats(url).pending_count == 0


@pytest.mark.slow  # CI: test_faults.py's rollback, test_pipeline_undo.py's repair by id
def test_failure_after_upgrade_rolls_back_to_the_backup(
    seeded_stack, prefect_api, hook, tmp_path, monkeypatch
):
    import core.regeneration as module

    url = seeded_stack.url
    with ReflexioClient(ReflexioSettings(url=url)) as client:  # so ARCHIVED rows exist (H1)
        op = client.rerun_profile_generation()
        client.wait_for_operation("profile_generation", op.operation_id, 120)
        client.upgrade_profiles(only_affected_users=True)
    before = profile_rows(url, "current", "archived")
    assert [r for r in before if r["status"] == "archived"]

    def broken(*args, **kwargs):
        raise RuntimeError("injected verification crash")

    monkeypatch.setattr(module, "verify_ids", broken)
    params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_failed()
    assert (
        "rolled back" in state.message
        and "data equals the state before the upgrade" in state.message
    )
    after = profile_rows(url, "current", "archived")
    assert comparable(after, PROFILE_KEYS) == comparable(before, PROFILE_KEYS)
    assert comparable(after, PROFILE_KEYS) == comparable(_backup_rows(tmp_path), PROFILE_KEYS)
    assert state.result(raise_on_failure=False).decision is Decision.ROLLED_BACK
    assert _stats(url).pending_count == 0


def test_failed_notification_is_surfaced_and_retried_next_run(seeded_stack, prefect_api, tmp_path):
    url = seeded_stack.url
    seeded_stack.set_stall("billing_error")
    with WebhookReceiver(status=500) as broken:
        block = save_webhook_block(broken.url)
        params = dict(reflexio_url=url, backup_dir=tmp_path, notification_block=block)
        state = profile_regeneration(**params, return_state=True)
    assert state.is_failed() and state.message.startswith("Learning is stalled: billing_error")
    assert "notification FAILED" in state.message and "HTTP 500" in state.message
    assert "secret-token" not in state.message
    assert len(broken.posts) == 3  # first try + 2 task retries
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        assert not client.get_stall_state().notified_in_cc  # so the next run tries again
