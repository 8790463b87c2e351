"""Bad input: flow parameters, CLI arguments, inputs only the server can judge, and
malformed server answers.

Parameter and CLI cases need no Reflexio server (the proxy in front of it proves no request
was sent). Inputs only the server can judge (a rerun window or agent_version without
interactions, a config it refuses, backups that do not match it) and malformed answers go
through the proxy to the real server; each run must fail naming what was wrong, and write
nothing: no write request reached the server (but the one that carried the bad input) and
every profile and playbook (by id) and the config (byte for byte) are as before.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.backup import BackupWriter
from core.kinds import user_playbooks
from flows.clear_users import clear_users
from flows.cli import main as cli_main
from flows.params import (
    ClearUsersParams,
    PlaybookRegenerationParams,
    PromptChangeParams,
    RegenerationParams,
    RestoreParams,
    SweepParams,
)
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import prompt_change
from flows.restore import restore_profiles
from flows.sweep import manual_sweep
from local_stack.fault_proxy import FaultProxy
from tests.integration.pipeline_helpers import config_bytes, profile_rows
from tests.reliability.helpers import (
    CHECKED_BY_ID,
    UPGRADE,
    Snapshot,
    assert_consistent,
    everyones_rows,
    kind_rows,
)
from tests.tally import claim

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


# --- bad inputs only the server can judge, and answers it should not give ------------------
#
# Each runs a writer through the proxy with the real server behind. Checked after each:
# the run Failed with a message naming what was wrong and what to do, no write route
# reached the server (the proxy's log), and every profile and user playbook (by id) and the
# config (byte for byte) are as before.

WRITE_ROUTES = (
    "rerun_",
    "upgrade_",
    "downgrade_",
    "add_user_",
    "delete_",
    "clear_user_data",
    "manual_",
    "set_config",
    "update_config",
    "run_playbook_aggregation",
)


Judged = tuple[str, ...] | str | None
"""The write routes that carry a bad input to the server, which refuses it or finds
nothing to do (for a refused candidate config: also the check's undo, writing the original
config back)."""


def _writes(proxy: FaultProxy, judged_by: Judged = None) -> list[str]:
    """The write requests that reached the server, but for those in `judged_by`."""
    allowed = (judged_by,) if isinstance(judged_by, str) else judged_by or ()
    return [
        r.path
        for r in proxy.calls(forwarded=True)
        if any(w in r.path for w in WRITE_ROUTES) and not any(a in r.path for a in allowed)
    ]


def _run(flow: str, proxy_url: str, work: Path, params: dict[str, Any]) -> Any:
    """Run one writer through the proxy; its state."""
    common: dict[str, Any] = {"reflexio_url": proxy_url}
    if flow in ("profiles", "playbooks", "prompt check"):
        common |= {"backup_dir": str(work / "backups"), "notification_block": "none"}
    if flow in ("restore", "clear"):
        common["records_dir"] = str(work / "records")
    run = {
        "profiles": profile_regeneration,
        "playbooks": playbook_regeneration,
        "restore": restore_profiles,
        "clear": clear_users,
        "sweep": manual_sweep,
        "prompt check": prompt_change,
    }[flow]
    return run(**common, **params, return_state=True)


Setup = Callable[[str, str, Path], dict[str, Any]]
"""(server url, proxy url, work dir) -> the run's parameters."""


def _restore_of(make: Callable[[str, str, Path], Path], **extra: Any) -> Setup:
    def setup(url: str, proxy_url: str, work: Path) -> dict[str, Any]:
        return {"backup_file": str(make(url, proxy_url, work)), **extra}

    return setup


def _other_server(url: str, proxy_url: str, work: Path) -> Path:
    with BackupWriter(work / "made", "profiles", "http://127.0.0.1:9", "bad-input-0") as writer:
        writer.write(profile_rows(url, "current", "archived"))
    return Path(writer.info.manifest_path)


def _playbooks(url: str, proxy_url: str, work: Path) -> Path:
    rows = kind_rows(url, user_playbooks("v1"))["current"]
    with BackupWriter(work / "made", "user_playbooks", proxy_url, "bad-input-0", "v1") as writer:
        writer.write(rows)
    return Path(writer.info.manifest_path)


def _of_this_server(url: str, proxy_url: str, work: Path) -> Path:
    with BackupWriter(work / "made", "profiles", proxy_url, "bad-input-0") as writer:
        writer.write(profile_rows(url, "current", "archived"))
    return Path(writer.info.manifest_path)


def _tampered(url: str, proxy_url: str, work: Path) -> Path:
    """This server's backup with one row's content changed after it was written."""
    manifest = _of_this_server(url, proxy_url, work)
    data = next(p for p in manifest.parent.iterdir() if p.suffix == ".gz")
    text = gzip.decompress(data.read_bytes()).decode()
    data.write_bytes(gzip.compress(text.replace('"content": "', '"content": "X', 1).encode()))
    return manifest


def _without_data(url: str, proxy_url: str, work: Path) -> Path:
    """This server's backup whose data file was deleted after it was written."""
    manifest = _of_this_server(url, proxy_url, work)
    next(p for p in manifest.parent.iterdir() if p.suffix == ".gz").unlink()
    return manifest


def _fixed(params: dict[str, Any]) -> Setup:
    return lambda url, proxy_url, work: params


CANDIDATE_REFUSED = "window_size: many\n"
"""A candidate config the server's own config model refuses."""
# Each: the writer, its parameters, what its message must say, and the one write request
# that carries the bad input to the server (which must refuse it, or find nothing to do).
SERVER_JUDGED: dict[str, tuple[str, Setup, tuple[str, ...], Judged]] = {
    "a profile rerun window without interactions": (
        "profiles",
        _fixed({"start_time": T0.replace(year=2001), "end_time": T0.replace(year=2001, month=2)}),
        ("No interactions found", "Nothing was upgraded"),
        "rerun_profile_generation",
    ),
    "an agent_version the server has no interactions of": (
        "playbooks",
        _fixed({"agent_version": "no-such-version"}),
        ("No interactions found", "Nothing was upgraded"),
        "rerun_playbook_generation",
    ),
    "a candidate config the server refuses": (
        "prompt check",
        _fixed({"candidate_config": CANDIDATE_REFUSED, "agent_version": "v1"}),
        ("rejected POST /api/update_config", "window_size", "Fix the request"),
        ("update_config", "set_config"),  # the check's undo writes the original back
    ),
    "a backup of another server": (
        "restore",
        _restore_of(_other_server, assume_no_erasures=True),
        ("is a backup of 127.0.0.1:9", "allow_other_server"),
        None,
    ),
    "a playbook backup given to the profile restore": (
        "restore",
        _restore_of(_playbooks, assume_no_erasures=True),
        ("holds user_playbooks, not profiles",),
        None,
    ),
    "a backup changed after it was written": (
        "restore",
        _restore_of(_tampered, assume_no_erasures=True, recreate_missing=True),
        ("Checksum mismatch", "Do not restore from it"),
        None,
    ),
    "a backup without its run's touched-ids file": (
        "restore",
        _restore_of(_of_this_server, assume_no_erasures=True),
        ("No touched-ids file", "recreate_missing=true"),
        None,
    ),
    "a records location without the server's erasure record": (
        "restore",
        _restore_of(_of_this_server, recreate_missing=True),
        ("No erasure record", "assume_no_erasures=true"),
        None,
    ),
    "a backup whose data file is gone": (
        "restore",
        _restore_of(_without_data, assume_no_erasures=True, recreate_missing=True),
        (".jsonl.gz",),
        None,
    ),
    "a backup file that does not exist": (
        "restore",
        _fixed({"backup_file": "/nonexistent/profiles-x.manifest.json"}),
        ("/nonexistent/profiles-x.manifest.json",),
        None,
    ),
}
MALFORMED: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "a listing row without its id": (
        "profiles",
        {
            "fault": "body",
            "path": "status_filter=current",
            "transform": lambda b: {
                **b,
                "user_profiles": [
                    {k: v for k, v in r.items() if k != "profile_id"} for r in b["user_profiles"]
                ],
            },
        },
        ("profile_id",),
    ),
    "a key the server refuses (401)": (
        "profiles",
        {"fault": "status", "path": "/stall_state", "status": 401, "times": None},
        ("401",),
    ),
    "a billing refusal (402)": (
        "sweep",
        {"fault": "status", "path": "/stall_state", "status": 402, "times": None},
        ("402",),
    ),
    "an HTML page for a restore's ARCHIVED listing": (
        "restore",
        {"fault": "html", "path": "status_filter=archived"},
        ("HTML page",),
    ),
    "a key the server refuses (401), to clear-user-data's inventory": (
        "clear",
        {"fault": "status", "path": "get_all_profiles", "status": 401, "times": None},
        ("401",),
    ),
    "a rerun request the server refuses (400)": (
        "profiles",
        {"fault": "status", "path": "rerun_profile_generation", "status": 400},
        ("400",),
    ),
    "an HTML page for the config": (
        "prompt check",
        {"fault": "html", "path": "get_config"},
        ("HTML page",),
    ),
    "a stall state of the wrong type": (
        "sweep",
        {
            "fault": "body",
            "path": "/stall_state",
            "transform": lambda b: {**b, "stalled": "perhaps"},
        },
        ("stalled",),
    ),
    "a playbook listing of the wrong shape": (
        "playbooks",
        {"fault": "body", "path": "get_user_playbooks", "body": [1, 2, 3]},
        ("get_user_playbooks",),
    ),
    "an inventory listing of the wrong shape": (
        "clear",
        {"fault": "body", "path": "get_all_profiles", "body": {"success": True}},
        ("user_profiles",),
    ),
    "a restore's listing with a missing field": (
        "restore",
        {"fault": "body", "path": "get_all_profiles", "body": {"success": True}},
        ("user_profiles",),
    ),
}
SENT_IN_CI = {
    "a profile rerun window without interactions",
    "a backup of another server",
    "a key the server refuses (401)",
}
"""CI's share (one of each sort); `make test-all` runs them all (about 10 s each)."""


def _sent_case(name: str) -> Any:
    return pytest.param(name, marks=() if name in SENT_IN_CI else pytest.mark.slow, id=name)


def _refused_writing_nothing(
    url: str,
    proxy: FaultProxy,
    state: Any,
    expected: tuple[str, ...],
    before: Any,
    judged_by: Judged = None,
) -> None:
    """The run failed saying `expected`, no write reached the server (but the one that
    carried the bad input, `judged_by`), and every row (by id) and the config are as
    `before`."""
    assert state.is_failed(), state.message
    assert state.message and "Traceback" not in state.message, state.message
    for text in expected:
        assert text in state.message, (text, state.message)
    assert _writes(proxy, judged_by) == []
    assert (everyones_rows(url), config_bytes(url)) == before
    claim("bad inputs sent to the server, nothing written")
    claim(CHECKED_BY_ID)


@pytest.mark.parametrize("name", [_sent_case(name) for name in SERVER_JUDGED])
def test_a_bad_input_only_the_server_can_judge_writes_nothing(
    name, clean_stack, prefect_api, proxy, tmp_path
):
    url = clean_stack.url  # these write nothing: no fresh seed needed
    flow, setup, expected, judged_by = SERVER_JUDGED[name]
    params = setup(url, proxy.url, tmp_path)
    before = (everyones_rows(url), config_bytes(url))
    state = _run(flow, proxy.url, tmp_path, params)
    _refused_writing_nothing(url, proxy, state, expected, before, judged_by)


@pytest.mark.parametrize("name", [_sent_case(name) for name in MALFORMED])
def test_a_malformed_answer_before_any_write_writes_nothing(
    name, clean_stack, prefect_api, proxy, tmp_path
):
    url = clean_stack.url  # these write nothing: no fresh seed needed
    flow, rule, expected = MALFORMED[name]
    params: dict[str, Any] = {}
    if flow == "restore":
        params = _restore_of(_of_this_server, recreate_missing=True, assume_no_erasures=True)(
            url, proxy.url, tmp_path
        )
    elif flow == "clear":
        params = {"user_ids": [sorted({r["user_id"] for r in profile_rows(url, "current")})[0]]}
    elif flow == "sweep":
        params = {"sources": ["chat"], "kinds": ["profiles"]}
    elif flow == "prompt check":
        params = {"candidate_config": "window_size: 10\n", "agent_version": "v1"}
    before = (everyones_rows(url), config_bytes(url))
    proxy.add(**rule)
    state = _run(flow, proxy.url, tmp_path, params)
    assert proxy.faults(), f"the fault of {name!r} never fired"
    _refused_writing_nothing(url, proxy, state, expected, before)
