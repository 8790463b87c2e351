"""Flat flow parameters (flows/flat_params.py): one form field per model field, `--param`
values that validate, a typed gate policy, hidden fields kept out of the form, bad input
refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.cli._utilities import load_json_key_values  # what `--param k=v` goes through
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema
from pydantic import BaseModel

from flows import params as models
from flows.clear_users import clear_users
from flows.flat_params import build
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import prompt_change
from flows.restore import restore_profiles
from flows.stall_watch import stall_watch
from flows.sweep import manual_sweep
from gate import GatePolicy, GatePolicyOverrides

FLOWS = [
    (profile_regeneration, models.RegenerationParams),
    (playbook_regeneration, models.PlaybookRegenerationParams),
    (restore_profiles, models.RestoreParams),
    (manual_sweep, models.SweepParams),
    (stall_watch, models.StallWatchParams),
    (clear_users, models.ClearUsersParams),
    (prompt_change, models.PromptChangeParams),
]
HIDDEN = {
    models.PlaybookRegenerationParams: {"only_affected_users"},
    models.ClearUsersParams: {"listed_before"},
}
"""Fields the form must not show: the run journal sets listed_before; only_affected_users
cannot be true for playbooks."""


def _schema(flow: Any) -> dict[str, Any]:
    return parameter_schema(flow).model_dump(exclude_none=True)


@pytest.mark.parametrize(("flow", "model"), FLOWS, ids=lambda f: getattr(f, "name", ""))
def test_every_flow_takes_one_described_parameter_per_field(flow: Any, model: type[BaseModel]):
    schema = _schema(flow)
    shown = set(model.model_fields) - HIDDEN.get(model, set())
    assert set(schema["properties"]) == shown
    for name in shown:
        prop = schema["properties"][name]
        assert prop["description"] == model.model_fields[name].description, name
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required
    positions = sorted(schema["properties"], key=lambda n: schema["properties"][n]["position"])
    assert set(positions[: len(required)]) == required  # the form asks for these first


def test_gate_policy_is_a_typed_form_of_every_threshold():
    schema = _schema(profile_regeneration)
    assert schema["properties"]["gate_policy"]["$ref"].endswith("/GatePolicyOverrides")
    assert schema["properties"]["gate_policy"]["default"] == {}
    thresholds = schema["definitions"]["GatePolicyOverrides"]["properties"]
    assert set(thresholds) == set(GatePolicy.model_fields)
    similarity = thresholds["similarity_threshold"]["anyOf"][0]
    assert similarity == {"type": "number", "minimum": 0.0, "maximum": 1.0}


def test_values_computed_on_the_worker_are_not_recorded_in_the_form(monkeypatch):
    """backup_dir's default is the worker's REFLEXIO_BACKUP_DIR, read when the run starts:
    the schema (which `prefect deploy` records) says null, not the deployer's directory."""
    monkeypatch.setenv("REFLEXIO_BACKUP_DIR", "/deployer/backups")
    assert _schema(profile_regeneration)["properties"]["backup_dir"]["default"] is None
    monkeypatch.setenv("REFLEXIO_BACKUP_DIR", "/worker/backups")
    built = build(models.RegenerationParams, {"backup_dir": None})
    assert built.backup_dir == "/worker/backups"


def test_param_strings_validate_into_the_model():
    """`prefect deployment run --param k=v` reads each value as JSON, else as a string."""
    values = load_json_key_values(
        [
            "dry_run=true",
            'sources=["chat"]',
            'gate_policy={"similarity_threshold": 0.6}',
            "agent_version=v2",
            "lock_timeout_s=90",
            "start_time=2026-01-01T00:00:00Z",
        ],
        "parameter",
    )
    built = build(
        models.PlaybookRegenerationParams, playbook_regeneration.validate_parameters(values)
    )
    assert built.dry_run is True and built.sources == ["chat"] and built.agent_version == "v2"
    assert built.lock_timeout_s == 90 and built.start_time is not None
    policy = built.policy()
    assert policy.similarity_threshold == 0.6
    assert policy.max_lost_users == GatePolicy().max_lost_users  # the rest keep the defaults


def test_the_body_receives_the_validated_model(monkeypatch):
    import flows.profile_regeneration as module

    received: list[Any] = []
    monkeypatch.setattr(module, "run_regeneration", lambda kind, p, title: received.append(p))
    profile_regeneration.fn(dry_run=True, gate_policy={"max_lost_users": 3})
    (params,) = received
    assert isinstance(params, models.RegenerationParams)
    assert params.dry_run and params.policy().max_lost_users == 3
    assert params.only_affected_users and params.on_warn == "upgrade"  # defaults kept


@pytest.mark.parametrize(
    ("flow", "model", "values", "expected"),
    [
        (
            profile_regeneration,
            models.RegenerationParams,
            {"gate_policy": {"no_such": 1}},
            "unknown gate threshold(s) no_such; the thresholds are similarity_threshold",
        ),
        (
            profile_regeneration,
            models.RegenerationParams,
            {"gate_policy": {"volume_ratio_fail_min": 0.9}},
            "volume_ratio_fail_min (0.9) must not exceed volume_ratio_warn_min",
        ),
        (
            profile_regeneration,
            models.RegenerationParams,
            {"start_time": "2026-02-01T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"},
            "start_time must be before end_time",
        ),
        (manual_sweep, models.SweepParams, {}, "sources: Field required"),
        (
            playbook_regeneration,
            models.PlaybookRegenerationParams,
            {"only_affected_users": True},
            "only_affected_users is not available for playbooks",
        ),
    ],
)
def test_bad_input_is_refused_naming_what_was_wrong(flow, model, values, expected):
    with pytest.raises(ParameterTypeError) as info:
        build(model, flow.validate_parameters(values))
    assert expected in str(info.value)
    assert "input_value" not in str(info.value)  # pydantic's echo of the input


def test_hidden_fields_are_parameters_a_caller_can_pass():
    """The run journal runs a dead clear-user-data again with listed_before."""
    listed = {"ann": {"profiles": ["p1"], "playbooks": [7]}}
    values = clear_users.validate_parameters({"user_ids": ["ann"], "listed_before": listed})
    built = build(models.ClearUsersParams, values)
    assert built.listed_before == listed


def test_the_candidate_config_is_secret_in_the_form_and_the_model():
    schema = _schema(prompt_change)["properties"]["candidate_config"]
    assert schema["format"] == "password" and schema["writeOnly"] is True
    built = build(models.PromptChangeParams, {"candidate_config": "api_key: sk-very-secret\n"})
    assert "sk-very-secret" not in repr(built)
    assert built.candidate_config.get_secret_value() == "api_key: sk-very-secret\n"


def test_overrides_keep_only_what_was_given():
    overrides = GatePolicyOverrides(max_lost_users=2)
    assert overrides.model_dump() == {"max_lost_users": 2}
    assert GatePolicy().with_overrides(overrides).max_lost_users == 2
