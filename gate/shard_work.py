"""The gate's per-user work on one shard: a pure function of the shard's rows.

Rows are taken in a canonical order, (user_id, baseline before candidate, position in the
input frame), so every result, tie-breaks included, is the same whatever other users share
the shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gate.hygiene import flag_rows
from gate.policy import GatePolicy
from gate.report import Example
from gate.sharding import Shard
from gate.similarity import EPS, Similarities, compare
from gate.textvec import HashedTfidf


@dataclass(frozen=True)
class Ranked:
    """An example with its rank key: merged examples are the smallest keys of each kind."""

    key: tuple
    example: Example


@dataclass(frozen=True)
class ShardResult:
    """What the merge needs from one shard: per-user table (sorted by user_id), the hygiene
    flags of its candidate rows, and its best examples of each kind."""

    users: pd.DataFrame
    flags: pd.DataFrame
    examples: list[Ranked]


def evaluate_shard(shard: Shard, idf: HashedTfidf, policy: GatePolicy) -> ShardResult:
    """Hygiene, similarity, per-user counts and examples of one shard's rows."""
    base, cand = shard.baseline, shard.candidate
    n_base = len(base)

    def both(column: str) -> np.ndarray:
        return np.concatenate(
            [base[column].to_numpy(dtype=object), cand[column].to_numpy(dtype=object)]
        )

    codes, distinct_users = pd.factorize(both("user_id"), sort=True)
    order = np.argsort(codes, kind="stable")  # canonical order: rows grouped by user
    content = both("content")[order]
    is_candidate = order >= n_base
    flags = flag_rows(cand["content"], policy.min_chars, policy.max_chars)
    sims = compare(
        content,
        codes[order],
        is_candidate,
        idf,
        policy.duplicate_threshold,
        max_pairs=policy.max_examples,
    )
    flagged = np.r_[np.zeros(n_base, dtype=bool), flags.any(axis=1).to_numpy()]
    rows = pd.DataFrame(
        {
            "user_id": both("user_id")[order],
            "content": content,
            "is_candidate": is_candidate,
            "request_id": both("request_id")[order],
            "flagged": flagged[order],
            "pos": np.concatenate([base["pos"].to_numpy(), cand["pos"].to_numpy()])[order],
        }
    )
    users = _per_user(rows, codes[order], np.asarray(distinct_users, dtype=object), sims, policy)
    return ShardResult(users=users, flags=flags, examples=_examples(rows, sims, policy))


def _per_user(
    rows: pd.DataFrame,
    user_codes: np.ndarray,
    user_ids: np.ndarray,
    sims: Similarities,
    policy: GatePolicy,
) -> pd.DataFrame:
    """One row per user (in the order of `user_ids`, which `user_codes` index for each row):
    counts, retained and novel rows, duplicates, flagged rows, candidate request ids."""
    similar = sims.best >= policy.similarity_threshold - EPS
    cand = rows["is_candidate"].to_numpy()
    n_users = len(user_ids)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(user_codes[mask], minlength=n_users).astype(np.int64)

    has_dup = sims.duplicates > 0
    users = pd.DataFrame(
        {
            "user_id": pd.Series(user_ids, dtype=object),
            "baseline_rows": count(~cand),
            "candidate_rows": count(cand),
            "retained_rows": count(~cand & similar),
            "novel_rows": count(cand & ~similar),
            "baseline_duplicate_rows": count(~cand & has_dup),
            "candidate_duplicate_rows": count(cand & has_dup),
            "flagged_rows": count(rows["flagged"].to_numpy()),
        }
    )
    request = rows["request_id"].to_numpy(dtype=object)
    known = cand & pd.notna(request)
    req_codes, req_values = pd.factorize(request[known])
    pairs = np.unique(user_codes[known].astype(np.int64) * (len(req_values) + 1) + req_codes)
    users["request_ids"] = np.bincount(pairs // (len(req_values) + 1), minlength=n_users)
    users["request_ids"] = users["request_ids"].astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = users["baseline_rows"].where(users["baseline_rows"] > 0)
        users["volume_ratio"] = (users["candidate_rows"] / base).round(3)
        users["retention"] = (users["retained_rows"] / base).round(3)
    users["lost"] = (users["baseline_rows"] > 0) & (users["candidate_rows"] == 0)
    return users


def _examples(rows: pd.DataFrame, sims: Similarities, policy: GatePolicy) -> list[Ranked]:
    """The shard's few most lost, most changed and most duplicated rows, with rank keys:
    lost and changed by similarity (ascending), duplicated by similarity (descending), then
    by the rows' canonical order."""
    k = policy.max_examples
    content = rows["content"].to_numpy()
    users = rows["user_id"].to_numpy()
    pos = rows["pos"].to_numpy()
    base = ~rows["is_candidate"].to_numpy()
    similar = sims.best >= policy.similarity_threshold - EPS
    out: list[Ranked] = []

    def example(kind: str, i: int, j: int, sim: float) -> Example:
        counterpart = str(content[j]) if j >= 0 else None
        return Example(
            kind=kind, user_id=users[i], content=content[i], other=counterpart, similarity=sim
        )

    for kind, mask in (
        ("lost", base & ~similar),
        ("changed", base & similar & (sims.best < 1 - EPS)),
    ):
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(sims.best[idx], kind="stable")[:k]]
        for i, j in zip(idx.tolist(), sims.match[idx].tolist(), strict=True):
            sim = float(sims.best[i])
            out.append(Ranked((sim, users[i], int(pos[i])), example(kind, i, j, sim)))
    for i, j, sim in sims.duplicate_pairs[:k].tolist():
        i, j = int(i), int(j)
        key = (-sim, users[i], int(pos[i]), int(pos[j]))
        out.append(Ranked(key, example("duplicated", i, j, sim)))
    return out
