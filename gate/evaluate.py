"""`evaluate`: may the candidate (PENDING) generation replace the baseline (CURRENT)?

The work is cut into a plan (IDF sample parts and user-hash shards), run part by part by a
runner (here, or in worker processes; tasks/gate.py runs the same parts on Dask), and the
shards' results are merged into one report, the same whatever the number of shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pandas as pd

from gate.frames import Kind, normalize_frame, require_frame
from gate.idf import IdfPart, combine, fit_part, idf_parts
from gate.merge import merge
from gate.policy import GatePolicy
from gate.report import GateReport
from gate.runners import SHARDS_PER_WORKER, Runner, local_runner, worker_count
from gate.shard_work import evaluate_shard
from gate.sharding import Shard, split


@dataclass(frozen=True)
class GatePlan:
    """The gate's inputs cut into parts: the IDF sample's parts and the user-hash shards."""

    rows: int
    idf_parts: list[IdfPart]
    shards: list[Shard]


def plan(candidate: pd.DataFrame, baseline: pd.DataFrame, shards: int) -> GatePlan:
    """Validate and normalise the frames, then cut them into `shards` user-hash shards.

    Frames have columns user_id, row_id, content, request_id (trigger and source optional),
    e.g. from `frame_from_rows` or `FrameBuilder`.
    """
    cand = normalize_frame(candidate, "candidate")
    base = normalize_frame(baseline, "baseline")
    return GatePlan(
        rows=len(cand) + len(base),
        idf_parts=idf_parts(cand, base, shards),
        shards=split(cand, base, shards),
    )


def run_plan(gate_plan: GatePlan, policy: GatePolicy, kind: Kind, runner: Runner) -> GateReport:
    """Fit the IDF weights, evaluate every shard with `runner`, and merge."""
    idf = combine(runner(fit_part, gate_plan.idf_parts))
    results = runner(partial(evaluate_shard, idf=idf, policy=policy), gate_plan.shards)
    return merge(results, policy, kind)


def evaluate(
    candidate: pd.DataFrame,
    baseline: pd.DataFrame,
    policy: GatePolicy | None = None,
    kind: Kind = "profiles",
    *,
    shards: int | None = None,
    workers: int | None = None,
) -> GateReport:
    """Run every check of the candidate (PENDING) rows against the baseline (CURRENT) rows.

    The verdict is the worst severity of the checks. `workers` processes (default: see
    `gate.runners.worker_count`) run `shards` user-hash shards (default: one per process
    when in-process, else SHARDS_PER_WORKER per process); the report does not depend on
    either.
    """
    policy = policy or GatePolicy()
    rows = len(require_frame(candidate, "candidate")) + len(require_frame(baseline, "baseline"))
    workers = worker_count(rows) if workers is None else workers
    shards = shards or (workers * SHARDS_PER_WORKER if workers > 1 else 1)
    gate_plan = plan(candidate, baseline, shards)
    with local_runner(workers) as runner:
        return run_plan(gate_plan, policy, kind, runner)
