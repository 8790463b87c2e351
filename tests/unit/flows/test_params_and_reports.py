"""Flow parameters, the H6 way-back text, run summaries and secret-free notification errors."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from pydantic import ValidationError

from flows.params import (
    PlaybookRegenerationParams,
    PromptChangeParams,
    RegenerationParams,
    RestoreParams,
)
from tasks.notify import NotificationFailed, deliver
from tasks.report import RunSummary


def test_defaults_are_safe():
    params = RegenerationParams()
    assert params.only_affected_users and not params.dry_run
    assert not params.discard_stale_pending
    assert params.notification_block == "reflexio-alerts"


def test_gate_policy_overrides_are_validated():
    assert RegenerationParams(gate_policy={"max_lost_users": 2}).policy().max_lost_users == 2
    with pytest.raises(ValueError, match="no_such_threshold"):
        RegenerationParams(gate_policy={"no_such_threshold": 1})
    with pytest.raises(ValueError, match="similarity_threshold"):
        RegenerationParams(gate_policy={"similarity_threshold": 7})


def test_time_window_and_sources_are_checked():
    with pytest.raises(ValueError, match="before end_time"):
        RegenerationParams(start_time=datetime(2026, 2, 1), end_time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        RegenerationParams(sources=["chat", " "])
    with pytest.raises(ValueError):
        RegenerationParams(unknown_field=1)


@pytest.mark.parametrize("bad", ["", "v 1", "v1\n"])
def test_agent_version_must_be_a_token(bad):
    with pytest.raises(ValueError):
        PlaybookRegenerationParams(agent_version=bad)


def test_url_override_keeps_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("REFLEXIO_API_KEY", "sk-secret")
    settings = RegenerationParams(reflexio_url="http://127.0.0.1:9999").settings()
    assert settings.url == "http://127.0.0.1:9999"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(RestoreParams(backup_file="x.json"))


def test_restore_keeps_newer_rows_unless_asked_and_says_what_replaced_remove_newer():
    params = RestoreParams(backup_file="x.manifest.json")
    assert not params.delete_newer and not params.dry_run and not params.allow_other_server
    with pytest.raises(ValueError, match="remove_newer was replaced by delete_newer"):
        RestoreParams(backup_file="x.manifest.json", remove_newer=True)


def test_summary_markdown():
    summary = RunSummary(title="T", server="http://x:1", decision="Upgraded")
    summary.counts_before = {"current": 3, "pending": 0, "archived": 0}
    summary.counts_after = {"current": 2, "pending": 0, "archived": 3}
    summary.backup_path = "/tmp/b.json"
    summary.note("rerun completed")
    text = summary.to_markdown()
    assert "**Decision:** Upgraded" in text and "| current | 3 | 2 |" in text
    assert "`/tmp/b.json`" in text and "rerun completed" in text


def test_failed_delivery_is_raised_without_the_url():
    secret_url = "http://127.0.0.1:1/hook/very-secret-token"
    block = CustomWebhookNotificationBlock(name="t", url=secret_url)

    def boom(body, subject=None):
        request = httpx.Request("POST", secret_url)
        raise httpx.HTTPStatusError(
            f"500 for {secret_url}", request=request, response=httpx.Response(500, request=request)
        )

    object.__setattr__(block, "notify", boom)
    with pytest.raises(NotificationFailed) as info:
        deliver(block, "t", "subject", "body")
    assert "very-secret-token" not in str(info.value) and "HTTP 500" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_repeated_source_is_refused_before_any_rerun() -> None:
    import pytest
    from pydantic import ValidationError

    from flows.params import RegenerationParams

    with pytest.raises(ValidationError, match="must not repeat a name"):
        RegenerationParams(sources=["chat", "chat"])


def test_playbook_form_refuses_only_affected_users_and_says_why():
    with pytest.raises(ValidationError, match="archives every CURRENT row of the agent_version"):
        PlaybookRegenerationParams(only_affected_users=True)
    assert "only_affected_users" not in PlaybookRegenerationParams.model_json_schema()["properties"]


def test_a_prompt_check_that_regenerates_nothing_is_refused() -> None:
    with pytest.raises(ValidationError, match="nothing to regenerate"):
        PromptChangeParams(candidate_config="window_size: 10", regenerate_profiles=False)
    assert PromptChangeParams(
        candidate_config="window_size: 10", regenerate_profiles=False, agent_version="v1"
    )
