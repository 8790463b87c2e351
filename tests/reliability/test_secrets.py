"""Secrets (the API key, the webhook URL and its token) never reach logs, artifacts, the
report, run messages or exception texts. A separate server that requires the key."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from core.backup import open_backup
from core.check_record import CheckRecord
from core.identity import server_key
from flows.cli import main as cli_main
from flows.profile_regeneration import profile_regeneration
from local_stack.seed import CONVERSATIONS, seed
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.check_record import save_record
from tests.integration.pipeline_helpers import WebhookReceiver, save_webhook_block

pytestmark = pytest.mark.reliability

API_KEY = "rk-live-SECRETKEY-4f9d2c1b"
WRONG_KEY = "rk-live-WRONGKEY-77aa"
TOKEN = "hooktoken-SECRET-91c3e7"
CONFIG_SECRET = "cfg-SECRET-e5b07a"
"""In the server's config, which the prompt check keeps in its record and puts back."""


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(state_dir=tmp_path_factory.mktemp("keyed"), api_key=API_KEY) as running:
        users = {u: CONVERSATIONS[u] for u in ("alice", "bob")}
        seed(running.url, users=users, api_key=API_KEY)
        yield running


def _all_prefect_text() -> str:
    """Every log line and artifact the Prefect API holds (this session's runs)."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    parts: list[str] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            logs = client.read_logs(limit=200, offset=offset)
            parts += [log.message for log in logs]
            if len(logs) < 200:
                break
            offset += 200
        offset = 0
        while True:
            artifacts = client.read_artifacts(limit=200, offset=offset)
            for artifact in artifacts:
                parts += [str(artifact.data), str(artifact.description), str(artifact.key)]
            if len(artifacts) < 200:
                break
            offset += 200
    return "\n".join(parts)


def _dead_check(url: str, config: dict) -> CheckRecord:
    """The record a prompt check killed right after applying its candidate leaves."""
    return CheckRecord(
        server=server_key(url),
        flow_run_id="dead-check",
        started_at=int(time.time()),
        promote=False,
        profiles=True,
        agent_version=None,
        profiles_pending_before=frozenset(),
        playbooks_pending_before=frozenset(),
        config=config,
    )


def test_no_secret_anywhere(
    keyed_stack, prefect_api, tmp_path, monkeypatch, caplog, capsys, measured
):
    caplog.set_level(logging.INFO, logger="prefect")
    caplog.set_level(logging.DEBUG, logger="reflexio_api")
    monkeypatch.setenv("REFLEXIO_API_KEY", API_KEY)
    url = keyed_stack.url
    texts: list[str] = []
    with WebhookReceiver() as hook:
        hook_url = hook.url.rsplit("/hook/", 1)[0] + f"/hook/{TOKEN}"
        block = save_webhook_block(hook_url)
        params = dict(
            reflexio_url=url, backup_dir=tmp_path, notification_block=block, notify_on_pass=True
        )
        # 1. a full regeneration with the key, notifying on success.
        state = profile_regeneration(**params, return_state=True)
        assert state.is_completed(), state.message
        texts.append(state.message)
        # 2. a stall: notified through the webhook.
        keyed_stack.set_stall("auth_error", "provider said 401")
        state = profile_regeneration(**params, return_state=True)
        assert state.is_failed() and "stalled" in state.message.lower(), state.message
        texts.append(state.message)
        keyed_stack.clear_stall()
        assert len(hook.posts) == 2
        texts += [str(p) for p in hook.posts]
    # 3. the webhook is gone: the notification fails (its error must not name the URL).
    keyed_stack.set_stall("billing_error", "quota")
    state = profile_regeneration(**params, return_state=True)
    texts.append(state.message)
    assert "FAILED" in state.message or "failed" in state.message, state.message
    keyed_stack.clear_stall()
    # 4. a rejected key: the AuthError's text.
    monkeypatch.setenv("REFLEXIO_API_KEY", WRONG_KEY)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_failed() and "401" in state.message, state.message
    texts.append(state.message)
    monkeypatch.setenv("REFLEXIO_API_KEY", API_KEY)
    # 5. the prompt check (a dry run of the regeneration), with its Markdown report, on a
    # server whose config holds a secret; it first undoes a dead check's record holding it.
    with ReflexioClient(ReflexioSettings(url=url, api_key=API_KEY)) as client:
        client.update_config({"agent_context_prompt": CONFIG_SECRET})
        original = client.get_config()
    window = original.get("window_size") or 10
    save_record(url, _dead_check(url, original))
    config = tmp_path / "candidate.yaml"
    config.write_text(f"window_size: {window}\n")
    report = tmp_path / "report.md"
    args = ["--config", str(config), "--reflexio-url", url, "--report", str(report)]
    code = cli_main(["prompt-check", *args, "--backup-dir", str(tmp_path / "pc")])
    assert code == 0, capsys.readouterr()
    assert "Undid an unfinished prompt check" in report.read_text()
    texts.append(report.read_text())
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text, _all_prefect_text()]
    for manifest in Path(tmp_path).rglob("*.manifest.json"):
        texts += [manifest.read_text(), json.dumps(list(open_backup(manifest).iter_rows()))]
    everything = "\n".join(texts)
    for secret in (API_KEY, WRONG_KEY, TOKEN, hook_url, CONFIG_SECRET):
        assert secret not in everything, secret
    assert "Bearer" not in everything
    measured["runs scanned for secrets"] += 5
