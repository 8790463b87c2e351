"""Combine the shards' results into the report the unsharded evaluation gives."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from gate import checks
from gate.frames import Kind
from gate.policy import GatePolicy
from gate.report import Example, GateReport, worst
from gate.shard_work import Ranked, ShardResult

EXAMPLE_KINDS = ("lost", "changed", "duplicated")


def merge(results: Sequence[ShardResult], policy: GatePolicy, kind: Kind) -> GateReport:
    """Per-user tables concatenated and sorted by user_id, hygiene flags concatenated, the
    examples of each kind with the smallest rank keys; then every check on the whole."""
    if not results:
        raise ValueError("merge needs the result of at least one shard")
    tables = [r.users for r in results if len(r.users)] or [results[0].users]
    users = pd.concat(tables, ignore_index=True)
    users = users.iloc[users["user_id"].to_numpy(dtype=object).argsort(kind="stable")]
    users = users.reset_index(drop=True)
    flags = pd.concat([r.flags for r in results], ignore_index=True)
    found = [
        checks.coverage(users, policy),
        checks.volume(users, policy),
        checks.user_volume(users, policy),
        checks.retention(users, policy),
        checks.novelty(users, policy),
        checks.duplication(users, policy),
        *checks.hygiene(flags, policy),
        checks.stale_generations(users, policy),
    ]
    return GateReport(
        kind=kind,
        verdict=worst(found),
        candidate_rows=int(users["candidate_rows"].sum()),
        baseline_rows=int(users["baseline_rows"].sum()),
        checks=found,
        per_user=users.astype(object).where(users.notna(), None).to_dict("records"),
        examples=_examples([r for result in results for r in result.examples], policy),
        policy=policy,
    )


def _examples(ranked: list[Ranked], policy: GatePolicy) -> list[Example]:
    """Of each kind, the max_examples examples with the smallest rank keys."""
    out: list[Example] = []
    for name in EXAMPLE_KINDS:
        of_kind = sorted((r for r in ranked if r.example.kind == name), key=lambda r: r.key)
        out += [r.example for r in of_kind[: policy.max_examples]]
    return out
