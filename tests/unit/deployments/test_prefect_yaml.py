"""prefect.yaml: every entrypoint imports, every parameter set fits its flow's signature,
and a schedule sets only what differs from its deployment's flat parameters.

An entrypoint whose file does not exist yet is xfail (strict): the day the file lands the
mark disappears and the test must pass for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[3]
CONFIG = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS: list[dict[str, Any]] = CONFIG["deployments"]
REGENERATION = {
    "flows/profile_regeneration.py:profile_regeneration",
    "flows/playbook_regeneration.py:playbook_regeneration",
}


def _param(deployment: dict[str, Any]) -> Any:
    path = deployment["entrypoint"].split(":", 1)[0]
    marks = []
    if not (ROOT / path).exists():
        marks.append(pytest.mark.xfail(reason=f"{path} is not written yet", strict=True))
    return pytest.param(deployment, id=deployment["name"], marks=marks)


def _parameter_sets(deployment: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    base = deployment.get("parameters") or {}
    sets = [("deployment", base)]
    for schedule in deployment.get("schedules") or []:
        # The server merges schedule parameters over the deployment's, by top-level name.
        sets.append((schedule["slug"], {**base, **(schedule.get("parameters") or {})}))
    return sets


@pytest.mark.parametrize("deployment", [_param(d) for d in DEPLOYMENTS])
def test_entrypoint_imports_and_parameters_fit(deployment: dict[str, Any], monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    schema = parameter_schema(flow)
    known = set(schema.properties)
    required = set(schema.required or [])
    scheduled = bool(deployment.get("schedules"))
    for label, values in _parameter_sets(deployment):
        unknown = set(values) - known
        assert not unknown, f"{deployment['name']} / {label}: unknown parameters {unknown}"
        missing = required - set(values)
        if missing and not scheduled and label == "deployment":
            # Run on demand only: the operator gives these with --param or the UI form.
            continue
        assert not missing, f"{deployment['name']} / {label}: a scheduled run lacks {missing}"
        flow.validate_parameters(values)  # raises ParameterTypeError on a bad value


def _model_of(deployment: dict[str, Any]) -> type:
    """The parameter model behind a deployment's flow (flows/flat_params.py)."""
    from flows import params

    models = {
        "profile_regeneration": params.RegenerationParams,
        "playbook_regeneration": params.PlaybookRegenerationParams,
        "manual_sweep": params.SweepParams,
        "stall_watch": params.StallWatchParams,
        "clear_users": params.ClearUsersParams,
        "restore_profiles": params.RestoreParams,
        "prompt_change": params.PromptChangeParams,
    }
    return models[deployment["entrypoint"].rsplit(":", 1)[1]]


@pytest.mark.parametrize(
    "deployment", [d for d in DEPLOYMENTS if d.get("schedules")], ids=lambda d: d["name"]
)
def test_a_schedule_sets_only_what_differs_and_inherits_the_rest(deployment: dict[str, Any]):
    """Prefect merges a schedule's parameters over the deployment's by top-level name: each
    scheduled run's parameters are the deployment's, with the schedule's few fields
    replaced, and build the model with both."""
    from flows.flat_params import build

    base = deployment.get("parameters") or {}
    for schedule in deployment["schedules"]:
        own = schedule.get("parameters") or {}
        repeated = {k for k, v in own.items() if base.get(k) == v}
        assert not repeated, f"{schedule['slug']} repeats its deployment's {repeated}"
        model = build(_model_of(deployment), {**base, **own})
        for name, value in {**base, **own}.items():
            assert getattr(model, name) == value, (schedule["slug"], name)


def test_deployment_names_are_unique_per_flow():
    pairs = [(d["entrypoint"], d["name"]) for d in DEPLOYMENTS]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_every_schedule_has_a_unique_slug_and_a_timezone(deployment: dict[str, Any]):
    slugs = [s.get("slug") for s in deployment.get("schedules") or []]
    assert all(slugs), f"{deployment['name']}: a schedule without slug duplicates on redeploy"
    assert len(slugs) == len(set(slugs))
    for schedule in deployment.get("schedules") or []:
        assert schedule.get("timezone"), f"{schedule['slug']}: give the timezone explicitly"


def test_slugs_are_unique_across_the_file():
    slugs = [s["slug"] for d in DEPLOYMENTS for s in d.get("schedules") or []]
    assert len(slugs) == len(set(slugs))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_everything_runs_on_the_process_pool(deployment: dict[str, Any]):
    assert deployment["work_pool"]["name"] == "reflexio-pool"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_no_deployment_concurrency_limit_can_cancel_a_writer(deployment: dict[str, Any]):
    """Its lease cancels the run when a renewal fails, even mid-upgrade; the server lock
    (flows/lock.py) keeps one writer per server instead and never interrupts a step."""
    assert "concurrency_limit" not in deployment


def test_sweeps_have_one_schedule_per_source():
    (sweep,) = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows/sweep.py:manual_sweep"]
    per_schedule = [s["parameters"]["sources"] for s in sweep["schedules"]]
    assert all(len(sources) == 1 for sources in per_schedule)
    assert len({sources[0] for sources in per_schedule}) == len(per_schedule)


def test_the_playbook_nightly_has_no_schedule_it_follows_the_profile_nightly():
    """deployments.setup's chain starts it when the profile nightly completes; a schedule too
    would run it twice (and race the profile run for the lock)."""
    (playbooks,) = [
        d
        for d in DEPLOYMENTS
        if d["entrypoint"] == "flows/playbook_regeneration.py:playbook_regeneration"
    ]
    assert playbooks["schedules"] == []


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_flow_parameter_types_resolve_without_the_module_namespace(deployment: dict[str, Any]):
    """`flow.serve()` validates parameters in a process that cannot resolve string
    annotations (`from __future__ import annotations`): the flow modules must keep real ones."""
    import inspect

    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    for parameter in inspect.signature(flow.fn).parameters.values():
        assert not isinstance(parameter.annotation, str), (
            f"{deployment['entrypoint']}: parameter {parameter.name!r} is annotated with the "
            f"string {parameter.annotation!r}; drop `from __future__ import annotations`."
        )


def _flat_items(value: Any) -> list[tuple[str, Any]]:
    """Every (key, scalar value) pair anywhere in a YAML tree."""
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if not isinstance(v, dict | list)]
        return items + [i for v in value.values() for i in _flat_items(v)]
    if isinstance(value, list):
        return [i for v in value for i in _flat_items(v)]
    return []


def test_shared_names_come_from_the_catalogue():
    from deployments import catalogue

    blocks = []
    for deployment in DEPLOYMENTS:
        assert deployment["work_pool"]["name"] == catalogue.WORK_POOL, deployment["name"]
        assert catalogue.FLOW_TAG in deployment.get("tags", []), deployment["name"]
        blocks += [v for key, v in _flat_items(deployment) if key == "notification_block"]
    assert blocks and set(blocks) == {catalogue.NOTIFICATION_BLOCK}


def test_nightly_regenerations_ask_on_warn_and_playbooks_wait_briefly_for_the_lock():
    """A nightly WARN pauses for an operator. The playbook nightly starts once the profile
    run has ended (and released the lock), so it waits minutes, not the profile run's
    approval window, for a sweep that may hold the lock."""
    from flows.params import PlaybookRegenerationParams, RegenerationParams

    found = {d["entrypoint"]: d for d in DEPLOYMENTS if d["entrypoint"] in REGENERATION}
    profiles = found["flows/profile_regeneration.py:profile_regeneration"]
    profile_params = [RegenerationParams(**values) for _, values in _parameter_sets(profiles)]
    playbooks = found["flows/playbook_regeneration.py:playbook_regeneration"]
    playbook_params = [
        PlaybookRegenerationParams(**values) for _, values in _parameter_sets(playbooks)
    ]
    assert {p.on_warn for p in profile_params + playbook_params} == {"ask"}
    assert all(p.lock_timeout_s <= 3600 for p in playbook_params)


def _full_name(deployment: dict[str, Any]) -> str:
    """`flow/deployment`, the name deployments.setup reads the deployment's id by."""
    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    return f"{flow.name}/{deployment['name']}"


def test_the_deployments_setup_watches_are_in_the_file():
    from deployments.catalogue import NIGHTLY_DEPLOYMENTS, STALL_WATCH_DEPLOYMENT

    names = {_full_name(d): d for d in DEPLOYMENTS}
    assert set(NIGHTLY_DEPLOYMENTS) | {STALL_WATCH_DEPLOYMENT} <= set(names)
    scheduled = {
        name
        for name, d in names.items()
        if d["entrypoint"] in REGENERATION and any(s["active"] for s in d["schedules"])
    }
    assert scheduled == {NIGHTLY_DEPLOYMENTS[0]}, "the playbook nightly follows the profiles"


def test_the_stall_watch_ends_before_its_next_run_even_through_a_slow_outage():
    """Its slowest run (every server call and notification failing slowly through its
    retries) fits in its timeout, and the timeout in its interval: a slow outage ends
    Unreachable (notified once), never TimedOut, and two runs never overlap."""
    from deployments.catalogue import FLOW_TIMEOUT_S, STALL_WATCH_DEPLOYMENT
    from flows.stall_watch import run_budget_s

    (watch,) = [d for d in DEPLOYMENTS if _full_name(d) == STALL_WATCH_DEPLOYMENT]
    (interval,) = [s["interval"] for s in watch["schedules"]]
    assert run_budget_s() <= FLOW_TIMEOUT_S["stall-watch"] < interval


def test_the_ci_trigger_runs_the_prompt_check_deployment():
    """`reflexio-pipelines trigger-prompt-check` (and the example workflow) run a deployment
    that prefect.yaml defines, of the prompt-change flow."""
    from deployments.catalogue import PROMPT_CHECK_DEPLOYMENT
    from flows.prompt_change import prompt_change

    (check,) = [d for d in DEPLOYMENTS if d["entrypoint"].endswith(":prompt_change")]
    assert f"{prompt_change.name}/{check['name']}" == PROMPT_CHECK_DEPLOYMENT
    workflow = (ROOT / ".github" / "workflows" / "prompt-check.yml").read_text()
    assert f"trigger-prompt-check\n          --deployment {PROMPT_CHECK_DEPLOYMENT}" in workflow
