"""The prompt check's record: stored and read back whole, secrets out of every sentence."""

from __future__ import annotations

import json

import pytest

from core.check_record import CheckRecord, RecordError, UpgradeStarted

SECRET = "sk-live-do-not-print"


def record(**changes) -> CheckRecord:
    fields = {
        "server": "127.0.0.1:8081",
        "flow_run_id": "run-1",
        "started_at": 1_800_000_000,
        "promote": True,
        "profiles": True,
        "agent_version": "v1",
        "profiles_pending_before": frozenset({"stale-1"}),
        "playbooks_pending_before": frozenset({"7"}),
        "config": {"storage_config": {"api_key": SECRET}, "window_size": 10},
        "playbooks_before": ({"user_playbook_id": 3, "user_id": "ann", "content": SECRET},),
    }
    return CheckRecord(**{**fields, **changes})


def test_a_record_reads_back_equal_with_its_upgrades() -> None:
    started = record().with_upgrade(
        UpgradeStarted("profiles", 4, backup="/b/p.manifest.json", host="runner-1")
    )
    started = started.with_upgrade(UpgradeStarted("playbooks", 2, frozenset({"11", "12"})))

    assert CheckRecord.from_json(started.to_json(), "block") == started
    assert CheckRecord.from_json(json.loads(started.to_json()), "block") == started
    assert started.upgrade("profiles").backup == "/b/p.manifest.json"
    assert started.without_upgrade("profiles").upgrades == (started.upgrade("playbooks"),)


def test_setting_out_again_replaces_the_kinds_entry() -> None:
    first = record().with_upgrade(UpgradeStarted("profiles", 4))
    again = first.with_upgrade(UpgradeStarted("profiles", 5))
    assert [u.candidate_count for u in again.upgrades] == [5]


def test_services_follow_what_the_check_regenerates() -> None:
    assert record().services == ("profile_generation", "playbook_generation")
    assert record(agent_version=None).services == ("profile_generation",)
    assert record(profiles=False).services == ("playbook_generation",)


def test_no_config_or_playbook_content_in_its_repr_or_description() -> None:
    started = record().with_upgrade(UpgradeStarted("profiles", 1))
    for text in (repr(started), str(started), started.describe()):
        assert SECRET not in text
    assert "flow run run-1" in started.describe()
    assert "2027-01-15 08:00:00 UTC" in started.describe()
    assert "set out to upgrade profiles" in started.describe()


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("not json", "malformed"),
        ('{"version": 2}', "version 2"),
        ('{"version": 1}', "no field 'server'"),
        ("[]", "malformed"),
    ],
)
def test_an_unreadable_record_says_what_to_do(stored: str, reason: str) -> None:
    with pytest.raises(RecordError) as info:
        CheckRecord.from_json(stored, "reflexio-prompt-check-x")
    assert reason in str(info.value)
    assert "delete the block 'reflexio-prompt-check-x'" in str(info.value)


def test_a_malformed_field_is_not_echoed() -> None:
    data = json.loads(record().to_json())
    data["started_at"] = SECRET
    with pytest.raises(RecordError) as info:
        CheckRecord.from_json(json.dumps(data), "block")
    assert SECRET not in str(info.value)
