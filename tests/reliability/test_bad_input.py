"""Bad input: flow parameters, CLI arguments and malformed server answers.

Parameter and CLI cases need no Reflexio server (the proxy in front of it proves no request
was sent); malformed answers go through the proxy to the real server.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from flows.cli import main as cli_main
from flows.params import (
    ClearUsersParams,
    PlaybookRegenerationParams,
    PromptChangeParams,
    RegenerationParams,
    RestoreParams,
    SweepParams,
)
from flows.profile_regeneration import profile_regeneration
from tests.reliability.helpers import UPGRADE, Snapshot, assert_consistent

pytestmark = pytest.mark.reliability

T0 = datetime(2026, 1, 2, tzinfo=UTC)
BAD_PARAMS = {
    "empty agent_version": (PlaybookRegenerationParams, {"agent_version": ""}, "agent_version"),
    "whitespace agent_version": (
        PlaybookRegenerationParams,
        {"agent_version": "v 1"},
        "agent_version",
    ),
    "blank source": (RegenerationParams, {"sources": ["chat", "  "]}, "sources"),
    "threshold above 1": (
        RegenerationParams,
        {"gate_policy": {"similarity_threshold": 1.5}},
        "similarity_threshold",
    ),
    "negative threshold": (
        RegenerationParams,
        {"gate_policy": {"max_lost_users": -1}},
        "max_lost_users",
    ),
    "unknown threshold": (RegenerationParams, {"gate_policy": {"no_such": 1}}, "no_such"),
    "start after end": (
        RegenerationParams,
        {"start_time": T0, "end_time": T0.replace(day=1)},
        "start_time",
    ),
    "zero operation timeout": (
        RegenerationParams,
        {"operation_timeout_s": 0},
        "operation_timeout_s",
    ),
    "unknown parameter": (RegenerationParams, {"dryrun": True}, "dryrun"),
    "unknown on_warn": (RegenerationParams, {"on_warn": "maybe"}, "on_warn"),
    "renamed allow_warn": (RegenerationParams, {"allow_warn": True}, "on_warn"),
    "waits beyond the timeout": (
        RegenerationParams,
        {"approval_timeout_s": 80_000},
        "shorten one of them",
    ),
    "backup location of a bad block": (
        RegenerationParams,
        {"backup_dir": "block:Not A Name"},
        "does not name a Prefect block",
    ),
    "empty backup file": (RestoreParams, {"backup_file": " "}, "must not be empty"),
    "block backup without its file": (
        RestoreParams,
        {"backup_file": "block:team-backups"},
        "give the file in the block",
    ),
    "sweep of no source": (SweepParams, {"sources": []}, "sources"),
    "sweep of an unknown kind": (SweepParams, {"sources": ["chat"], "kinds": ["notes"]}, "kinds"),
    "playbook sweep without agent_version": (
        SweepParams,
        {"sources": ["chat"], "kinds": ["playbooks"], "agent_versions": []},
        "give at least one agent_version",
    ),
    "clear of no user": (ClearUsersParams, {"user_ids": []}, "user_ids"),
    "clear of a blank user id": (ClearUsersParams, {"user_ids": ["ann", " "]}, "blank"),
    "prompt check that regenerates nothing": (
        PromptChangeParams,
        {"candidate_config": "window_size: 10\n", "regenerate_profiles": False},
        "regenerate",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_bad_parameters_are_refused_naming_the_field(case, measured):
    model, values, field = BAD_PARAMS[case]
    with pytest.raises(ValidationError) as info:
        model(**values)
    assert field in str(info.value)
    measured["bad inputs refused before any request"] += 1


def test_bad_parameters_through_the_flow_send_nothing(stack, prefect_api, proxy, measured):
    """The flow validates its form before the run starts: not one request is sent."""
    for values in (
        {"gate_policy": {"similarity_threshold": 1.5}},
        {"start_time": T0, "end_time": T0.replace(day=1)},
    ):
        with pytest.raises(Exception) as info:
            profile_regeneration(reflexio_url=proxy.url, **values)
        assert "similarity_threshold" in str(info.value) or "start_time" in str(info.value)
    assert proxy.records == []
    measured["bad inputs sent to the server, nothing written"] += 2


def test_unknown_source_fails_cleanly_without_upgrading(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    """Sources cannot be validated offline; the server's rerun finds nothing and fails."""
    before = Snapshot.take(clean_stack.url)
    params = dict(reflexio_url=proxy.url, sources=["no-such-source"], backup_dir=tmp_path)
    state = profile_regeneration(**params, return_state=True)
    assert state.is_failed(), state.message
    assert "No interactions found" in state.message and "Nothing was upgraded" in state.message
    assert proxy.count("POST", UPGRADE) == 0
    assert assert_consistent(clean_stack.url, before) == "unchanged"
    measured["bad inputs sent to the server, nothing written"] += 1


# --- CLI -----------------------------------------------------------------------------------


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = cli_main(["prompt-check", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_bad_inputs_exit_3_with_distinct_messages(
    stack, prefect_api, proxy, tmp_path, capsys, measured
):
    url = ["--reflexio-url", proxy.url, "--backup-dir", str(tmp_path)]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("profile_extractor_config: [unclosed\n")
    good = tmp_path / "good.yaml"
    good.write_text("window_size: 10\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("similarity_threshold: 7\n")
    cases = {
        "missing config": (["--config", str(tmp_path / "nope.yaml"), *url], "does not exist"),
        "invalid YAML": (["--config", str(bad_yaml), *url], "is not valid YAML"),
        "bad policy value": (
            ["--config", str(good), "--gate-policy", str(policy), *url],
            "similarity_threshold",
        ),
        "missing policy file": (
            ["--config", str(good), "--gate-policy", str(tmp_path / "none.yaml"), *url],
            "cannot read gate policy",
        ),
    }
    messages = {}
    for name, (args, expected) in cases.items():
        code, output = _cli(capsys, *args)
        assert code == 3, (name, code, output)
        assert expected in output, (name, output)
        assert "Traceback" not in output
        messages[name] = output
    assert len(set(messages.values())) == len(cases)
    assert proxy.calls(method="POST") == []
    measured["bad inputs sent to the server, nothing written"] += len(cases)


def test_cli_usage_error_is_not_confused_with_a_stall(capsys, measured):
    with pytest.raises(SystemExit) as info:
        cli_main(["prompt-check"])
    assert info.value.code == 3
    measured["bad inputs refused before any request"] += 1


# --- malformed server answers ------------------------------------------------------------


def test_malformed_answers_before_any_write_fail_cleanly(
    stack, prefect_api, proxy, tmp_path, measured
):
    """An HTML page, wrong types and a missing field: UnexpectedPayload naming what was
    wrong, the run Failed, and not one POST reached the server."""
    cases = [
        ({"fault": "html", "path": "/stall_state"}, "HTML page"),
        (
            {
                "fault": "body",
                "path": "get_operation_status",
                "transform": lambda b: {**b, "success": "yes"},
            },
            "success",
        ),
        (
            {
                "fault": "body",
                "path": "get_profile_statistics",
                "transform": lambda b: {k: v for k, v in b.items() if k != "pending_count"},
            },
            "pending_count",
        ),
    ]
    params = dict(reflexio_url=proxy.url, backup_dir=tmp_path)
    for rule, expected in cases:
        proxy.clear()
        proxy.add(**rule)
        state = profile_regeneration(**params, return_state=True)
        assert state.is_failed(), state.message
        assert state.message.startswith("Stopped on a Reflexio error"), state.message
        assert expected in state.message and "Traceback" not in state.message
        assert len(proxy.faults()) == 1
        assert proxy.calls(method="POST") == []
        measured["bad inputs sent to the server, nothing written"] += 1


def test_unreadable_upgrade_answer_is_verified_or_rolled_back(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    before = Snapshot.take(clean_stack.url)
    proxy.add(fault="html", path=UPGRADE, forward=True)
    state = profile_regeneration(reflexio_url=proxy.url, backup_dir=tmp_path, return_state=True)
    assert proxy.count("POST", UPGRADE) == 1
    outcome = assert_consistent(clean_stack.url, before)  # the data itself is whole
    assert state.is_completed() or "rolled back" in state.message, state.message
    assert outcome == ("upgraded" if state.is_completed() else "unchanged")
    measured["bad inputs sent to the server, nothing written"] += 1
    measured["fault x call point cases"] += 1
