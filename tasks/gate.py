"""The evaluation gate as a task: evaluate (locally, or on a Dask cluster), then publish the
report as artifacts."""

from __future__ import annotations

import os
from typing import Any, Literal

import pandas as pd
from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from gate import GatePolicy, GateReport, RunScope, evaluate, with_scope
from gate.evaluate import GatePlan, plan
from gate.idf import IdfPart, combine, fit_part
from gate.merge import merge
from gate.shard_work import ShardResult, evaluate_shard
from gate.sharding import Shard
from gate.textvec import HashedTfidf

DASK_ADDRESS_ENV = "REFLEXIO_GATE_DASK_ADDRESS"
DASK_SHARDS = 8  # several shards per Dask worker balance the load


class DaskExtraMissing(RuntimeError):
    """A Dask scheduler address was given but prefect-dask is not installed."""


def gate_table(report: GateReport) -> list[dict[str, Any]]:
    """One row per check, for the table artifact."""
    return [
        {
            "check": c.name,
            "result": c.severity.value,
            "value": c.value,
            "threshold": c.threshold,
            "detail": c.message,
        }
        for c in report.checks
    ]


# The gate's data reaches the workers once, scattered by a Dask client; tasks and the flow
# get only its Dask keys and futures. Nothing is hashed for caching, persisted, or sent to
# the Prefect API but those keys and the policy.
@task(name="gate-idf-part", cache_policy=NO_CACHE, persist_result=False)
def idf_part_task(part: IdfPart) -> HashedTfidf:
    """Document frequencies of one part of the IDF sample."""
    return fit_part(part)


@task(name="gate-shard", cache_policy=NO_CACHE, persist_result=False)
def shard_task(shard: Shard, idf: HashedTfidf, policy: GatePolicy) -> ShardResult:
    """The gate's per-user work on one user-hash shard."""
    return evaluate_shard(shard, idf, policy)


@flow(name="evaluation-gate-shards", persist_result=False)
def gate_shards(
    idf_part_keys: list[str], shard_keys: list[str], policy: GatePolicy
) -> list[ShardResult]:
    """Fit the IDF weights and evaluate every shard, as tasks on the flow's DaskTaskRunner.

    The parts and shards are already on the cluster (scattered under these Dask keys): each
    task gets a Dask future, resolved on the worker that holds the data. The flow is defined
    here, not in a closure, as Prefect ships the flow object with every task.
    """
    from distributed import Future

    client = _runner_client()
    idf = combine(f.result() for f in idf_part_task.map([Future(k, client) for k in idf_part_keys]))
    [idf_on_workers] = client.scatter([idf], broadcast=True, hash=False)
    futures = shard_task.map(
        [Future(k, client) for k in shard_keys], unmapped(idf_on_workers), unmapped(policy)
    )
    return [f.result() for f in futures]


def _runner_client() -> Any:
    """The Dask client of the running flow's DaskTaskRunner."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    client = getattr(context.task_runner, "client", None) if context else None
    if client is None:
        raise RuntimeError("gate_shards runs only with a DaskTaskRunner (see evaluate_on_dask)")
    return client


def evaluate_on_dask(
    gate_plan: GatePlan,
    policy: GatePolicy,
    kind: Literal["profiles", "playbooks"],
    address: str,
) -> GateReport:
    """Run the plan's parts as Prefect tasks on the Dask cluster at `address`, then merge.

    The parts are scattered to the workers first (each to one worker); the flow's parameters
    are their Dask keys. Raises DaskExtraMissing when prefect-dask is not installed.

    Start the workers with Dask's MALLOC_TRIM_THRESHOLD_ unset (nanny config
    `distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null`, or the environment
    variable DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None): with
    Dask's default (65536) the per-shard work takes about twice the CPU.
    """
    try:
        from distributed import Client
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise DaskExtraMissing(
            f"the gate was asked to run on the Dask cluster at {address} but prefect-dask is "
            "not installed: pip install 'reflexio-pipelines[dask]', or leave the address "
            f"(dask_address / {DASK_ADDRESS_ENV}) unset to evaluate locally"
        ) from None

    # This client holds the scattered data until the flow has run (hash=False: random keys,
    # no hashing of the frames).
    with Client(address, set_as_default=False) as client:
        parts = client.scatter(gate_plan.idf_parts, broadcast=False, hash=False)
        shards = client.scatter(gate_plan.shards, broadcast=False, hash=False)
        run = gate_shards.with_options(task_runner=DaskTaskRunner(address=address))
        results = run([f.key for f in parts], [f.key for f in shards], policy)
    return merge(results, policy, kind)


@task(name="evaluation-gate", cache_policy=NO_CACHE)
def run_gate(
    candidate: pd.DataFrame,
    baseline: pd.DataFrame,
    policy: GatePolicy,
    kind: Literal["profiles", "playbooks"],
    artifact_prefix: str,
    dask_address: str | None = None,
    scope: RunScope | None = None,
) -> GateReport:
    """Gate PENDING (candidate) against CURRENT (baseline); Markdown + table artifacts.

    With `dask_address` (or REFLEXIO_GATE_DASK_ADDRESS) the user-hash shards run on that
    Dask cluster through prefect-dask (extra `dask`); else locally (`gate.evaluate`).
    """
    address = (dask_address or os.environ.get(DASK_ADDRESS_ENV, "")).strip()
    if address:
        report = evaluate_on_dask(plan(candidate, baseline, DASK_SHARDS), policy, kind, address)
    else:
        report = evaluate(candidate, baseline, policy=policy, kind=kind)
    report = with_scope(report, candidate, baseline, scope)
    create_markdown_artifact(
        report.to_markdown(),
        key=f"{artifact_prefix}-gate-report",
        description=report.summary_sentence(),
    )
    create_table_artifact(
        gate_table(report),
        key=f"{artifact_prefix}-gate-checks",
        description=f"Gate checks ({kind}): {report.verdict.value}",
    )
    return report
