"""deployments.setup against a throwaway Prefect API: twice gives the same objects, once."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.events.actions import RunDeployment

from deployments import setup
from deployments.catalogue import (
    NIGHTLY_DEPLOYMENTS,
    PACED_ROUTES,
    PLAYBOOK_NIGHTLY,
    PROFILE_NIGHTLY,
    SECRET_BLOCK,
    STALL_WATCH_DEPLOYMENT,
    lock_name,
    rate_limit_name,
)
from tests.prefect_stubs import deploy_stub

SECRET = "sk-test-do-not-print-1234"
HOOK = "http://127.0.0.1:9/hook-with-token-abcdef"
URL = "http://127.0.0.1:8081"


def _state() -> dict:
    with get_client(sync_client=True) as client:
        blocks = [
            (d.block_type.slug, d.name)
            for d in client.read_block_documents(include_secrets=False)
            if d.name in (SECRET_BLOCK, setup.NOTIFICATION_BLOCK)
        ]
        pools = [p.name for p in client.read_work_pools() if p.name == setup.WORK_POOL]
        automations = sorted(
            (a.name, a.id) for a in client.read_automations() if a.name.startswith("reflexio: ")
        )
        limits = {
            name: client.read_global_concurrency_limit_by_name(name)
            for name in [lock_name(URL)] + [rate_limit_name(URL, r) for r in PACED_ROUTES]
        }
    return {
        "blocks": sorted(blocks),
        "pools": pools,
        "automations": automations,
        "limits": {n: (x.id, x.limit, x.slot_decay_per_second) for n, x in limits.items()},
    }


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
        ("secret", SECRET_BLOCK),
    ]
    assert first["pools"] == [setup.WORK_POOL]
    assert [name for name, _ in first["automations"]] == [
        "reflexio: flow run failed",
        "reflexio: run awaits approval",
    ], "the deployments' automations wait for the deployments"
    out = capsys.readouterr().out
    for name in (STALL_WATCH_DEPLOYMENT, *NIGHTLY_DEPLOYMENTS):
        assert f"deployment '{name}': not deployed yet" in out
    assert first["limits"][lock_name(URL)][1:] == (1, 0.0)
    manual = rate_limit_name(URL, "manual_profile_generation")
    assert first["limits"][manual][1:] == (1, pytest.approx(1 / 13))
    clear = rate_limit_name(URL, "clear_user_data")
    assert first["limits"][clear][1:] == (1, pytest.approx(1 / 7))
    assert Secret.load(SECRET_BLOCK).get() == SECRET
    err = capsys.readouterr().err
    assert SECRET not in out + err
    assert "abcdef" not in out + err


def test_after_deploying_setup_watches_and_chains_the_deployments_by_id(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("REFLEXIO_API_KEY", raising=False)
    monkeypatch.setenv("REFLEXIO_URL", URL)
    ids = {name: deploy_stub(name) for name in (STALL_WATCH_DEPLOYMENT, *NIGHTLY_DEPLOYMENTS)}
    deploy_stub("other-flow/nightly")  # same deployment name, another flow: never matched
    assert setup.main(["--webhook-url", HOOK]) == 0
    with get_client(sync_client=True) as client:
        found = {a.name: a for a in client.read_automations() if a.name.startswith("reflexio: ")}
    related = {
        name: found[name].trigger.match_related.model_dump()
        for name in (
            "reflexio: stall watch silent",
            "reflexio: nightly silent",
            "reflexio: nightly-per-agent-version silent",
            setup.PLAYBOOKS_AFTER_PROFILES,
        )
    }
    assert related == {
        "reflexio: stall watch silent": {
            "prefect.resource.id": f"prefect.deployment.{ids[STALL_WATCH_DEPLOYMENT]}"
        },
        "reflexio: nightly silent": {
            "prefect.resource.id": f"prefect.deployment.{ids[PROFILE_NIGHTLY]}"
        },
        "reflexio: nightly-per-agent-version silent": {
            "prefect.resource.id": f"prefect.deployment.{ids[PLAYBOOK_NIGHTLY]}"
        },
        setup.PLAYBOOKS_AFTER_PROFILES: {
            "prefect.resource.id": f"prefect.deployment.{ids[PROFILE_NIGHTLY]}"
        },
    }
    (start,) = found[setup.PLAYBOOKS_AFTER_PROFILES].actions
    assert isinstance(start, RunDeployment) and start.deployment_id == ids[PLAYBOOK_NIGHTLY]
    assert start.parameters is None  # the playbook deployment's own (prefect.yaml)


def test_without_webhook_keeps_the_block_and_skips_nothing_else(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("REFLEXIO_API_KEY", raising=False)
    monkeypatch.delenv("REFLEXIO_ALERT_WEBHOOK_URL", raising=False)
    assert setup.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"secret block '{SECRET_BLOCK}': skipped (REFLEXIO_API_KEY is not set)" in out
    pool = f"work pool '{setup.WORK_POOL}' (process)"
    assert {f"{pool}: created", f"{pool}: exists"} & set(out), out  # exists if a test made it
    assert any(line.startswith(f"global concurrency limit '{lock_name(URL)}'") for line in out)
    for route in PACED_ROUTES:
        assert any(line.startswith(f"rate limit '{rate_limit_name(URL, route)}'") for line in out)


def test_automations_watch_failures_timeouts_and_silence():
    ids = {name: uuid4() for name in (STALL_WATCH_DEPLOYMENT, *NIGHTLY_DEPLOYMENTS)}
    specs = {
        a.name: a.trigger
        for a in setup.automation_specs("00000000-0000-0000-0000-000000000000", ids)
    }
    failed = specs["reflexio: flow run failed"]
    assert failed.expect == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.TimedOut",
    }, "Stalled, Unreachable and LockBusy are not faults to alert on"
    watch = specs["reflexio: stall watch silent"]
    assert (watch.posture.value, watch.within.total_seconds()) == ("Proactive", 900)
    assert watch.expect == {"prefect.flow-run.Completed", "prefect.flow-run.Unreachable"}
    for deployment in NIGHTLY_DEPLOYMENTS:
        nightly = specs[f"reflexio: {deployment.split('/')[1]} silent"]
        assert (nightly.posture.value, nightly.within.total_seconds()) == ("Proactive", 26 * 3600)
        assert nightly.match_related.model_dump() == {
            "prefect.resource.id": f"prefect.deployment.{ids[deployment]}"
        }
    assert not [a for a in setup.automation_specs(uuid4(), {}) if a.name.endswith(" silent")]


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
