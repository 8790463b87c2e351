"""The approval step against a real Prefect API and the real Reflexio server: the profile
flow pauses on a gate WARN (a policy that warns, never fails) with the gate report in its
form, and is resumed with an answer through Prefect's API, as the UI's Resume form does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import resume_flow_run
from prefect.input.actions import read_flow_run_input
from prefect.states import State

from core.kinds import PROFILES
from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from local_stack.stack import LocalStack
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

WARN = {"min_chars": 2000, "hygiene_fail_share": 1.0}
"""Every candidate row is 'too short': the gate warns, and no share of such rows fails."""
WAIT_S = 180


class Run:
    """The profile flow with on_warn=ask, running in a thread."""

    def __init__(self, url: str, backup_dir: Path, **params: Any) -> None:
        self.params = dict(
            reflexio_url=url, backup_dir=backup_dir, gate_policy=WARN, on_warn="ask", **params
        )
        self.state: State | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.state = profile_regeneration(**self.params, return_state=True)

    def __enter__(self) -> Run:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(WAIT_S)

    def paused(self) -> FlowRun:
        """The run, once it waits for its answer."""
        deadline = time.monotonic() + WAIT_S
        only_paused = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
        while time.monotonic() < deadline:
            assert self.thread.is_alive(), f"the run ended without pausing: {self.state}"
            with get_client(sync_client=True) as client:
                found = client.read_flow_runs(flow_run_filter=only_paused)
            if found:
                (run,) = found
                return run
            time.sleep(0.5)
        raise AssertionError(f"no paused run within {WAIT_S} s")

    def end(self) -> State:
        """The run's final state, once it finished."""
        self.thread.join(WAIT_S)
        assert self.state is not None, f"the run did not end within {WAIT_S} s"
        return self.state


@pytest.fixture
def url(seeded_stack: LocalStack, prefect_api: None) -> Iterator[str]:
    yield seeded_stack.url


def _ids(url: str, status: str) -> set[str]:
    return {r["profile_id"] for r in profile_rows(url, status)}


def _form_description(run: FlowRun) -> str:
    assert run.state is not None and run.state.state_details.run_input_keyset
    key = run.state.state_details.run_input_keyset["description"]
    return read_flow_run_input(key, flow_run_id=run.id)


def _summary(url: str) -> str:
    key = f"{PROFILES.artifact_prefix(url)}-summary"
    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": [key]})
        )
    return str(latest.data)


def test_approved_in_the_form_the_run_upgrades(url: str, tmp_path: Path) -> None:
    current = _ids(url, "current")
    with Run(url, tmp_path) as run:
        paused = run.paused()
        description = _form_description(paused)
        assert "## Upgrade profiles on" in description and "on_warn=ask" in description
        assert "hygiene_length" in description  # the gate report
        resume_flow_run(
            paused.id,
            run_input={"approve": True, "decided_by": "alice", "reason": "expected warnings"},
        )
        state = run.end()

    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED
    assert outcome.approval.by == "alice" and outcome.approval.reason == "expected warnings"
    assert _ids(url, "current").isdisjoint(current)
    assert _ids(url, "pending") == set()
    assert "- approval: Approved by alice: expected warnings." in _summary(url)


def test_rejected_in_the_form_nothing_is_upgraded(url: str, tmp_path: Path) -> None:
    current, archived = _ids(url, "current"), _ids(url, "archived")
    with Run(url, tmp_path) as run:
        paused = run.paused()
        with pytest.raises(RuntimeError, match="'reason' is a required property"):
            resume_flow_run(paused.id, run_input={"approve": False, "decided_by": "bob"})
        resume_flow_run(
            paused.id,
            run_input={"approve": False, "decided_by": "bob", "reason": "rows got too short"},
        )
        state = run.end()

    assert state.is_failed()
    assert state.message.startswith("Not upgraded: Rejected by bob: rows got too short.")
    assert state.result(raise_on_failure=False).decision is Decision.NOT_APPROVED
    assert (_ids(url, "current"), _ids(url, "archived")) == (current, archived)
    assert _ids(url, "pending") == set()  # the candidate was deleted
    assert "- approval: Rejected by bob: rows got too short." in _summary(url)


def test_no_answer_in_time_ends_the_run_not_upgraded(url: str, tmp_path: Path) -> None:
    current = _ids(url, "current")
    with Run(url, tmp_path, approval_timeout_s=3) as run:
        run.paused()
        state = run.end()

    assert state.is_failed()
    assert state.message.startswith("Not upgraded: Approval timed out: no answer within 3 s.")
    assert _ids(url, "current") == current
    assert _ids(url, "pending") == set()  # deleted by tasks after the expired pause
    with get_client(sync_client=True) as client:
        final = client.read_flow_run(state.state_details.flow_run_id).state
    assert final is not None and final.message == state.message
