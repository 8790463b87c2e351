"""`evaluate`: may the candidate (PENDING) generation replace the baseline (CURRENT)?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gate import checks
from gate.frames import Kind, normalize_frame
from gate.hygiene import flag_rows
from gate.policy import GatePolicy
from gate.report import Example, GateReport, worst
from gate.similarity import EPS, Similarities, compare


def _per_user(rows: pd.DataFrame, sims: Similarities, policy: GatePolicy) -> pd.DataFrame:
    """One row per user: counts, retained and novel rows, duplicates, flagged rows."""
    similar = sims.best >= policy.similarity_threshold - EPS
    cand = rows["is_candidate"].to_numpy()
    table = pd.DataFrame(
        {
            "user_id": rows["user_id"].to_numpy(),
            "baseline_rows": ~cand,
            "candidate_rows": cand,
            "retained_rows": ~cand & similar,
            "novel_rows": cand & ~similar,
            "baseline_duplicate_rows": ~cand & (sims.duplicates > 0),
            "candidate_duplicate_rows": cand & (sims.duplicates > 0),
            "flagged_rows": rows["flagged"].to_numpy(),
        }
    )
    users = table.groupby("user_id", sort=True).sum().astype(np.int64)
    stale = rows.loc[cand, ["user_id", "request_id"]].dropna()
    users["request_ids"] = stale.groupby("user_id")["request_id"].nunique()
    users["request_ids"] = users["request_ids"].fillna(0).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = users["baseline_rows"].where(users["baseline_rows"] > 0)
        users["volume_ratio"] = (users["candidate_rows"] / base).round(3)
        users["retention"] = (users["retained_rows"] / base).round(3)
    users["lost"] = (users["baseline_rows"] > 0) & (users["candidate_rows"] == 0)
    return users.reset_index()


def _examples(rows: pd.DataFrame, sims: Similarities, policy: GatePolicy) -> list[Example]:
    """The few most lost, most changed and most duplicated rows."""
    k = policy.max_examples
    content = rows["content"].to_numpy()
    users = rows["user_id"].to_numpy()
    base = ~rows["is_candidate"].to_numpy()
    similar = sims.best >= policy.similarity_threshold - EPS
    out: list[Example] = []

    def add(kind: str, idx: np.ndarray, other: np.ndarray, sim: np.ndarray) -> None:
        for i, j, s in zip(idx, other, sim, strict=True):
            counterpart = str(content[j]) if j >= 0 else None
            out.append(
                Example(
                    kind=kind,
                    user_id=users[i],
                    content=content[i],
                    other=counterpart,
                    similarity=float(s),
                )
            )

    for kind, mask in (
        ("lost", base & ~similar),
        ("changed", base & similar & (sims.best < 1 - EPS)),
    ):
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(sims.best[idx], kind="stable")[:k]]
        add(kind, idx, sims.match[idx], sims.best[idx])
    pairs = sims.duplicate_pairs[:k]
    add("duplicated", pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2])
    return out


def evaluate(
    candidate: pd.DataFrame,
    baseline: pd.DataFrame,
    policy: GatePolicy | None = None,
    kind: Kind = "profiles",
) -> GateReport:
    """Run every check of the candidate (PENDING) rows against the baseline (CURRENT) rows.

    Frames have columns user_id, row_id, content, request_id (trigger and source optional),
    e.g. from `frame_from_rows`. The verdict is the worst severity of the checks.
    """
    policy = policy or GatePolicy()
    cand = normalize_frame(candidate, "candidate")
    base = normalize_frame(baseline, "baseline")
    rows = pd.concat(
        [base.assign(is_candidate=False), cand.assign(is_candidate=True)], ignore_index=True
    )
    flags = flag_rows(cand["content"], policy.min_chars, policy.max_chars)
    rows["flagged"] = np.r_[np.zeros(len(base), dtype=bool), flags.any(axis=1).to_numpy()]
    codes, _ = pd.factorize(rows["user_id"])
    order = np.argsort(codes, kind="stable")
    rows = rows.iloc[order].reset_index(drop=True)
    sims = compare(
        rows["content"].to_numpy(dtype=object),
        codes[order],
        rows["is_candidate"].to_numpy(),
        policy.duplicate_threshold,
        max_pairs=policy.max_examples,
    )
    users = _per_user(rows, sims, policy)
    results = [
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
        verdict=worst(results),
        candidate_rows=len(cand),
        baseline_rows=len(base),
        checks=results,
        per_user=users.astype(object).where(users.notna(), None).to_dict("records"),
        examples=_examples(rows, sims, policy),
        policy=policy,
    )
