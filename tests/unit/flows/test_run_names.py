"""Run names say server and scope; every flow has a timeout; a regeneration's waits fit it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

import flows.run_names as run_names
from deployments.catalogue import FLOW_TIMEOUT_S, WORK_MARGIN_S
from flows.clear_users import clear_users
from flows.params import RegenerationParams
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import prompt_change
from flows.restore import restore_profiles
from flows.stall_watch import stall_watch
from flows.sweep import manual_sweep

FLOWS = [
    profile_regeneration,
    playbook_regeneration,
    prompt_change,
    restore_profiles,
    clear_users,
    manual_sweep,
    stall_watch,
]


def named(monkeypatch, namer, params) -> str:
    monkeypatch.setattr(run_names, "flow_run", SimpleNamespace(parameters=params or {}))
    return namer()


def test_names_say_kind_scope_and_server(monkeypatch):
    url = "http://LOCALHOST:8081/"
    assert named(monkeypatch, run_names.profiles, {"reflexio_url": url, "dry_run": True}) == (
        "profiles (dry run) @ 127.0.0.1:8081"
    )
    v2 = {"agent_version": "v2", "reflexio_url": "http://10.0.0.5:9000"}
    assert named(monkeypatch, run_names.playbooks, v2) == "playbooks v2 @ 10.0.0.5:9000"
    sweep = {"reflexio_url": url, "sources": ["chat", "email"], "kinds": ["profiles"]}
    assert named(monkeypatch, run_names.sweep, sweep) == (
        "sweep chat, email (profiles) @ 127.0.0.1:8081"
    )
    check = {"reflexio_url": url, "agent_version": "v1", "promote": True}
    assert named(monkeypatch, run_names.prompt_check, check) == (
        "prompt check profiles + playbooks v1 (promote) @ 127.0.0.1:8081"
    )
    restore = {"reflexio_url": url, "backup_file": "s3://b/x/profiles-a.manifest.json"}
    assert named(monkeypatch, run_names.restore, restore) == "restore profiles-a @ 127.0.0.1:8081"
    clear = {"reflexio_url": url, "user_ids": ["a", "b"]}
    assert named(monkeypatch, run_names.clear_users, clear) == "clear 2 user(s) @ 127.0.0.1:8081"


def test_the_server_comes_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("REFLEXIO_URL", "http://reflexio.internal:8081")
    assert named(monkeypatch, run_names.stall_watch, None) == "stall watch @ reflexio.internal:8081"


def test_parameters_too_broken_to_name_fall_back_to_the_flow_name(monkeypatch):
    assert named(monkeypatch, run_names.profiles, {"reflexio_url": "not a url"}) == (
        "profile-regeneration"
    )


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_flow_has_its_timeout_and_a_run_name(flow):
    assert flow.timeout_seconds == FLOW_TIMEOUT_S[flow.name]
    assert callable(flow.flow_run_name)


def test_the_stall_watch_ends_before_its_next_run():
    assert FLOW_TIMEOUT_S["stall-watch"] < 300


def test_waits_longer_than_the_timeout_allows_are_bad_input():
    budget = FLOW_TIMEOUT_S["profile-regeneration"] - WORK_MARGIN_S
    with pytest.raises(ValidationError, match="shorten one of them"):
        RegenerationParams(approval_timeout_s=budget, lock_timeout_s=60, operation_timeout_s=1)
    RegenerationParams(approval_timeout_s=budget - 61, lock_timeout_s=60, operation_timeout_s=1)
