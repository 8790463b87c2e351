"""Frames from REST rows, bad input and policy loading give clear errors."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

from gate import GatePolicy, GatePolicyError, GateReport, evaluate, frame_from_rows
from tests.unit.gate.conftest import frame

PROFILE = {
    "profile_id": "p1",
    "user_id": "u1",
    "content": "Prefers dark mode in the code editor",
    "source": "chat",
    "generated_from_request_id": "req-1",
    "status": "pending",
}
PLAYBOOK = {
    "id": "7",
    "user_id": "u1",
    "content": "Answer with short code samples",
    "trigger": "asks for code",
    "source": "chat",
    "request_id": "req-2",
}


def test_frame_from_profile_rows():
    f = frame_from_rows([PROFILE], "profiles")
    assert list(f.columns) == ["user_id", "row_id", "content", "trigger", "source", "request_id"]
    assert f.loc[0, "row_id"] == "p1" and f.loc[0, "request_id"] == "req-1"


def test_frame_from_playbook_rows_accepts_id_or_user_playbook_id():
    f = frame_from_rows([PLAYBOOK, {**PLAYBOOK, "user_playbook_id": "9"}], "playbooks")
    assert f.loc[0, "trigger"] == "asks for code"
    assert f.row_id.tolist()[1] == "9"


def test_frame_from_rows_names_missing_fields():
    row = {k: v for k, v in PROFILE.items() if k not in ("content", "generated_from_request_id")}
    with pytest.raises(ValueError, match="content, generated_from_request_id"):
        frame_from_rows([row], "profiles")
    with pytest.raises(ValueError, match="user_playbook_id or id"):
        frame_from_rows([{k: v for k, v in PLAYBOOK.items() if k != "id"}], "playbooks")


def test_frame_from_no_rows_is_empty():
    assert frame_from_rows([], "profiles").empty


def test_evaluate_names_missing_columns():
    with pytest.raises(ValueError, match=r"baseline frame is missing column.*request_id"):
        evaluate(frame(("u1", "text here")), frame(("u1", "x")).drop(columns="request_id"))


def test_policy_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("retention_fail_min: 0.1\nmax_lost_users: 2\n")
    policy = GatePolicy.from_yaml(path)
    assert policy.retention_fail_min == 0.1 and policy.max_lost_users == 2
    assert policy.novelty_warn_max == GatePolicy().novelty_warn_max
    assert policy.with_overrides({"max_lost_users": 0}).max_lost_users == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("retention_fail_min: 2\n", r"gate\.yaml: field 'retention_fail_min'"),
        ("retention_fail_min: lots\n", "retention_fail_min"),
        ("no_such_threshold: 1\n", "no_such_threshold"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: [\n", "cannot read"),
    ],
)
def test_bad_policy_yaml_names_field_and_file(tmp_path, text, match):
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    with pytest.raises(GatePolicyError, match=match):
        GatePolicy.from_yaml(path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"similarity_threshold": 1.5}, "similarity_threshold"),
        ({"max_lost_users": -1}, "max_lost_users"),
        ({"retention_fail_min": 0.9}, "retention_fail_min .* must not exceed retention_warn_min"),
        ({"typo": 1}, "typo"),
    ],
)
def test_out_of_range_override_is_a_clear_error(override, match):
    with pytest.raises(GatePolicyError, match=match):
        GatePolicy().with_overrides(override)


def test_report_renders_markdown_json_and_junit():
    base = frame(("u1", "Prefers dark mode in the code editor"), ("u2", "Vegetarian for years"))
    report = evaluate(base[base.user_id == "u1"], base)
    md = report.to_markdown()
    assert md.startswith("## ❌ Evaluation gate (profiles): FAIL")
    assert "| coverage | ❌ fail |" in md and "Worst lost rows" in md
    again = GateReport.model_validate_json(report.to_json())
    assert again.verdict == report.verdict and json.loads(report.to_json())["per_user"]
    suite = ET.fromstring(report.to_junit_xml())
    assert suite.get("tests") == str(len(report.checks))
    failures = [case.get("name") for case in suite if case.find("failure") is not None]
    # Half the rows are gone: volume fails too (below 0.75; it only warned at 0.5 once).
    assert failures == [c.name for c in report.failed] == ["coverage", "volume"]
    assert report.summary_sentence().startswith("Gate failed")
