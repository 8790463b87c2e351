"""Playbook regeneration flow (agent_version v1) against the real Reflexio server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from core.backup import open_backup
from core.kinds import PLAYBOOK_KEYS, comparable, user_playbooks
from core.outcome import Decision
from flows.params import PlaybookRegenerationParams
from flows.playbook_regeneration import playbook_regeneration
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import WebhookReceiver, run_backup, save_webhook_block

pytestmark = pytest.mark.integration


def _rows(url: str) -> list[dict]:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return [p.model_dump() for p in client.list_user_playbooks(agent_version="v1")]


def _backup_rows(directory: Path) -> list[dict]:
    return list(open_backup(run_backup(directory, "user_playbooks")).iter_rows())


@pytest.fixture
def hook(prefect_api):
    with WebhookReceiver() as receiver:
        receiver.block = save_webhook_block(receiver.url)
        yield receiver


def _params(url: str, hook, tmp_path: Path, **kw) -> dict[str, Any]:
    return dict(reflexio_url=url, backup_dir=tmp_path, notification_block=hook.block, **kw)


def test_agent_version_is_validated():
    with pytest.raises(ValueError, match="whitespace"):
        PlaybookRegenerationParams(agent_version="v 1")
    with pytest.raises(ValueError):
        PlaybookRegenerationParams(agent_version="")


def test_happy_path_upgrades_and_aggregates(seeded_stack, prefect_api, hook, tmp_path):
    url = seeded_stack.url
    before = [r for r in _rows(url) if r["status"] != "pending"]
    state = playbook_regeneration(**_params(url, hook, tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert "Aggregation:" in state.message
    after = _rows(url)
    current = {r["user_playbook_id"] for r in after if r["status"] is None}
    assert current and current.isdisjoint({r["user_playbook_id"] for r in before})
    assert not [r for r in after if r["status"] == "pending"]
    assert comparable(_backup_rows(tmp_path), PLAYBOOK_KEYS) == comparable(before, PLAYBOOK_KEYS)
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED and outcome.touched.promoted == len(current)
    prefix = user_playbooks("v1").artifact_prefix(url)
    with get_client(sync_client=True) as client:
        for key in ("gate-report", "gate-checks", "summary", "progress"):
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{prefix}-{key}"]))
            )
            assert found, key


def test_gate_rejection_puts_tombstoned_rows_back(seeded_stack, prefect_api, hook, tmp_path):
    url = seeded_stack.url
    current = {r["user_playbook_id"] for r in _rows(url) if r["status"] is None}
    # An empty generation: the gate fails on coverage; nothing was tombstoned.
    seeded_stack.llm.configure(style="empty")
    state = playbook_regeneration(**_params(url, hook, tmp_path), return_state=True)
    assert state.is_failed() and "Gate verdict FAIL" in state.message
    assert "The rerun tombstoned no CURRENT row" in state.message
    assert {r["user_playbook_id"] for r in _rows(url) if r["status"] is None} == current

    # A normal generation rejected by a strict policy: the rerun tombstoned CURRENT (H6);
    # the run puts every tombstoned row back as CURRENT (same content, new id).
    seeded_stack.llm.configure(style="normal")
    before = {(r["user_id"], r["content"]) for r in _rows(url) if r["status"] is None}
    strict = _params(url, hook, tmp_path, gate_policy={"min_chars": 1000})
    state = playbook_regeneration(**strict, return_state=True)
    assert state.is_failed() and "Gate verdict FAIL" in state.message
    assert state.result(raise_on_failure=False).decision is Decision.GATE_BLOCKED
    rows = _rows(url)
    assert "6 were put back from the backup" in state.message  # every seeded user's row
    assert {(r["user_id"], r["content"]) for r in rows if r["status"] is None} == before
    assert [r for r in rows if r["status"] == "pending"]  # kept: merged rows point at them
    assert "discard_stale_pending" not in state.message


def test_llm_auth_error_is_an_inferred_stall_before_upgrade(
    seeded_stack, prefect_api, hook, tmp_path
):
    url = seeded_stack.url
    current = {r["user_playbook_id"] for r in _rows(url) if r["status"] is None}
    seeded_stack.llm.configure(mode="auth_error")
    state = playbook_regeneration(**_params(url, hook, tmp_path), return_state=True)
    assert state.is_failed()
    assert state.message.startswith("Learning is stalled: auth_error (inferred")
    assert {r["user_playbook_id"] for r in _rows(url) if r["status"] is None} == current
    assert len(hook.posts) == 1
    assert "auth_error" in hook.posts[0]["subject"]


def test_failure_after_upgrade_rolls_back_to_the_backup(
    seeded_stack, prefect_api, hook, tmp_path, monkeypatch
):
    import core.regeneration as module

    def broken(*args, **kwargs):
        raise RuntimeError("injected verification crash")

    monkeypatch.setattr(module, "verify_ids", broken)
    url = seeded_stack.url
    before = [r for r in _rows(url) if r["status"] is None]
    state = playbook_regeneration(**_params(url, hook, tmp_path), return_state=True)
    assert state.is_failed() and "Upgrade rolled back after: injected" in state.message
    assert state.result(raise_on_failure=False).decision is Decision.ROLLED_BACK
    # H6: the rerun tombstoned the CURRENT rows it re-derived; the rollback re-created them
    # from the backup (the server gives them new ids) and removed what was promoted.
    after = _rows(url)
    content = ("user_id", "content")
    current_after = [r for r in after if r["status"] is None]
    assert comparable(current_after, content) == comparable(before, content)
    assert not [r for r in after if r["status"] == "pending"]
