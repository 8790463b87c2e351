"""deployments.setup against a throwaway Prefect API: twice gives the same objects, once."""

from __future__ import annotations

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client

from deployments import setup
from deployments.catalogue import lock_name

SECRET = "sk-test-do-not-print-1234"
HOOK = "http://127.0.0.1:9/hook-with-token-abcdef"


def _state() -> dict:
    with get_client(sync_client=True) as client:
        blocks = [
            (d.block_type.slug, d.name)
            for d in client.read_block_documents(include_secrets=False)
            if d.name in (setup.SECRET_BLOCK, setup.NOTIFICATION_BLOCK)
        ]
        pools = [p.name for p in client.read_work_pools() if p.name == setup.WORK_POOL]
        automations = sorted(
            (a.name, a.id) for a in client.read_automations() if a.name.startswith("reflexio: ")
        )
        limit = client.read_global_concurrency_limit_by_name(lock_name("http://127.0.0.1:8081"))
    return {"blocks": sorted(blocks), "pools": pools, "automations": automations, "limit": limit.id}


def test_setup_twice_creates_each_object_once(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("REFLEXIO_API_KEY", SECRET)
    monkeypatch.setenv("REFLEXIO_URL", "http://127.0.0.1:8081")
    assert setup.main(["--webhook-url", HOOK]) == 0
    first = _state()
    assert setup.main(["--webhook-url", HOOK]) == 0
    second = _state()

    assert first == second
    assert first["blocks"] == [
        ("custom-webhook", setup.NOTIFICATION_BLOCK),
        ("secret", setup.SECRET_BLOCK),
    ]
    assert first["pools"] == [setup.WORK_POOL]
    assert [name for name, _ in first["automations"]] == [
        "reflexio: flow run failed",
        "reflexio: run awaits approval",
    ]
    assert Secret.load(setup.SECRET_BLOCK).get() == SECRET
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert "abcdef" not in out.out + out.err


def test_without_webhook_keeps_the_block_and_skips_nothing_else(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("REFLEXIO_API_KEY", raising=False)
    monkeypatch.delenv("REFLEXIO_ALERT_WEBHOOK_URL", raising=False)
    assert setup.main([]) == 0
    out = capsys.readouterr().out
    assert "skipped (REFLEXIO_API_KEY is not set)" in out


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://hooks.slack.com/services/T/B/X", "slack"),
        ("https://acme.webhook.office.com/webhookb2/x", "teams"),
        ("https://prod-1.westeurope.logic.azure.com/workflows/x", "teams"),
        ("https://alerts.example.com/reflexio", "custom"),
    ],
)
def test_webhook_kind_from_url(url: str, kind: str):
    assert setup.webhook_kind(url) == kind
