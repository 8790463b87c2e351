"""Stand-ins for what else works on a Prefect API: deployments and runs of them without a
worker (the API emits a run's state events whoever moves it, so automations match them as
they would a worker's run), and another writer holding a server's lock."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.states import Running, State

from flows.lock import server_lock


def deploy_stub(name: str) -> UUID:
    """A deployment called `flow/deployment` that nothing runs; its id."""
    flow_name, deployment = name.split("/")
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        return client.create_deployment(flow_id=flow_id, name=deployment)


def end_run_of(deployment_id: UUID, state: State) -> UUID:
    """A run of the deployment taken to Running, then to `state`; its id."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id)
        client.set_flow_run_state(run.id, Running(), force=True)
        client.set_flow_run_state(run.id, state, force=True)
    return run.id


def runs_of(deployment_id: UUID) -> list[UUID]:
    """The ids of the deployment's flow runs."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    return [run.id for run in runs]


@contextmanager
def held_elsewhere(url: str, hold_s: float = 300) -> Iterator[threading.Event]:
    """Another writer (a thread with a copy of this context, Prefect settings included, so
    its hold is its own) holds the lock until the block ends or `hold_s` passes; yields the
    event that frees it."""
    acquired, free = threading.Event(), threading.Event()

    def hold() -> None:
        with server_lock(url, 30):
            acquired.set()
            free.wait(hold_s)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(hold,), daemon=True)
    thread.start()
    assert acquired.wait(30), "the other writer never got the lock"
    try:
        yield free
    finally:
        free.set()
        thread.join(30)
