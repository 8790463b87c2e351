"""Playbook regeneration flow (agent_version v1) against the real Reflexio server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.params import PlaybookRegenerationParams
from flows.playbook_regeneration import artifact_prefix, playbook_regeneration
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.domain import PLAYBOOK_KEYS, comparable
from tests.integration.pipeline_helpers import WebhookReceiver, save_webhook_block

pytestmark = pytest.mark.integration


def _rows(url: str) -> list[dict]:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return [p.model_dump() for p in client.list_user_playbooks(agent_version="v1")]


@pytest.fixture
def hook(prefect_api):
    with WebhookReceiver() as receiver:
        receiver.block = save_webhook_block(receiver.url)
        yield receiver


def _params(url: str, hook, tmp_path: Path, **kw) -> PlaybookRegenerationParams:
    return PlaybookRegenerationParams(
        reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block, **kw
    )


def test_agent_version_is_validated():
    with pytest.raises(ValueError, match="whitespace"):
        PlaybookRegenerationParams(agent_version="v 1")
    with pytest.raises(ValueError):
        PlaybookRegenerationParams(agent_version="")


def test_happy_path_upgrades_and_aggregates(seeded_stack, prefect_api, hook, tmp_path):
    url = seeded_stack.url
    before = [r for r in _rows(url) if r["status"] != "pending"]
    state = playbook_regeneration(_params(url, hook, tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert "Aggregation:" in state.message
    after = _rows(url)
    current = {r["user_playbook_id"] for r in after if r["status"] is None}
    assert current and current.isdisjoint({r["user_playbook_id"] for r in before})
    assert not [r for r in after if r["status"] == "pending"]
    backup = json.loads(next(tmp_path.glob("user-playbooks-v1-*.json")).read_text())
    assert comparable(backup["rows"], PLAYBOOK_KEYS) == comparable(before, PLAYBOOK_KEYS)
    prefix = artifact_prefix(ReflexioSettings(url=url), "v1")
    with get_client(sync_client=True) as client:
        for key in ("gate-report", "gate-checks", "summary", "progress"):
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{prefix}-{key}"]))
            )
            assert found, key


def test_gate_rejection_names_stranded_users_and_the_way_back(
    seeded_stack, prefect_api, hook, tmp_path
):
    url = seeded_stack.url
    current = {r["user_playbook_id"] for r in _rows(url) if r["status"] is None}
    # An empty generation: the gate fails on coverage; nothing was tombstoned.
    seeded_stack.llm.configure(style="empty")
    state = playbook_regeneration(_params(url, hook, tmp_path), return_state=True)
    assert state.is_failed() and "Gate verdict FAIL" in state.message
    assert "No user lost their CURRENT playbook" in state.message
    assert {r["user_playbook_id"] for r in _rows(url) if r["status"] is None} == current

    # A normal generation rejected by a strict policy: the rerun tombstoned CURRENT (H6).
    seeded_stack.llm.configure(style="normal")
    strict = _params(url, hook, tmp_path, gate_policy={"min_chars": 1000})
    state = playbook_regeneration(strict, return_state=True)
    assert state.is_failed() and "Gate verdict FAIL" in state.message
    assert "no CURRENT playbook now" in state.message
    assert "upgrade_user_playbooks('v1')" in state.message
    users = sorted({r["user_id"] for r in _rows(url)})
    assert ", ".join(users) in state.message
    pending = [r for r in _rows(url) if r["status"] == "pending"]
    assert pending  # kept for the way back
    with ReflexioClient(ReflexioSettings(url=url)) as client:  # the way back works
        client.upgrade_user_playbooks("v1")
    assert {r["user_id"] for r in _rows(url) if r["status"] is None} == set(users)


def test_llm_auth_error_is_an_inferred_stall_before_upgrade(
    seeded_stack, prefect_api, hook, tmp_path
):
    url = seeded_stack.url
    current = {r["user_playbook_id"] for r in _rows(url) if r["status"] is None}
    seeded_stack.llm.configure(mode="auth_error")
    state = playbook_regeneration(_params(url, hook, tmp_path), return_state=True)
    assert state.is_failed()
    assert state.message.startswith("Learning is stalled: auth_error (inferred")
    assert {r["user_playbook_id"] for r in _rows(url) if r["status"] is None} == current
    assert len(hook.posts) <= 1


def test_failure_after_upgrade_reports_what_the_rollback_could_do(
    seeded_stack, prefect_api, hook, tmp_path, monkeypatch
):
    import flows.playbook_regeneration as module

    def broken(*args, **kwargs):
        raise RuntimeError("injected verification crash")

    monkeypatch.setattr(module, "verify_upgrade", broken)
    state = playbook_regeneration(
        _params(url := seeded_stack.url, hook, tmp_path), return_state=True
    )
    assert state.is_failed() and "Upgrade rolled back after: injected" in state.message
    # H6: the rerun tombstoned every CURRENT row, the upgrade archived nothing, so the
    # server has nothing to downgrade to; the run says so and keeps the promoted rows.
    assert "downgrade_user_playbooks('v1')" in state.message
    assert [r for r in _rows(url) if r["status"] is None]
