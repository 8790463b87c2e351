"""`evaluate`: may the candidate (PENDING) generation replace the baseline (CURRENT)?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gate import checks
from gate.frames import Kind, normalize_frame
from gate.hygiene import flag_rows_later
from gate.parallel import worker_pool
from gate.policy import GatePolicy
from gate.report import Example, GateReport, worst
from gate.similarity import EPS, Similarities, compare


def _per_user(
    rows: pd.DataFrame,
    user_codes: np.ndarray,
    user_ids: np.ndarray,
    sims: Similarities,
    policy: GatePolicy,
) -> pd.DataFrame:
    """One row per user (sorted by user_id): counts, retained and novel rows, duplicates,
    flagged rows, candidate request ids. `user_codes` index `user_ids` for each row."""
    similar = sims.best >= policy.similarity_threshold - EPS
    cand = rows["is_candidate"].to_numpy()
    n_users = len(user_ids)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(user_codes[mask], minlength=n_users).astype(np.int64)

    has_dup = sims.duplicates > 0
    users = pd.DataFrame(
        {
            "baseline_rows": count(~cand),
            "candidate_rows": count(cand),
            "retained_rows": count(~cand & similar),
            "novel_rows": count(cand & ~similar),
            "baseline_duplicate_rows": count(~cand & has_dup),
            "candidate_duplicate_rows": count(cand & has_dup),
            "flagged_rows": count(rows["flagged"].to_numpy()),
        },
        index=pd.Index(user_ids, dtype=object, name="user_id"),
    )
    request = rows["request_id"].to_numpy(dtype=object)
    known = cand & pd.notna(request)
    req_codes, req_values = pd.factorize(request[known])
    pairs = np.unique(user_codes[known].astype(np.int64) * (len(req_values) + 1) + req_codes)
    users["request_ids"] = np.bincount(pairs // (len(req_values) + 1), minlength=n_users)
    users["request_ids"] = users["request_ids"].astype(np.int64)
    users = users.iloc[np.argsort(user_ids, kind="stable")]
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
    n_base = len(base)
    user_ids = np.concatenate(
        [base["user_id"].to_numpy(dtype=object), cand["user_id"].to_numpy(dtype=object)]
    )
    codes, distinct_users = pd.factorize(user_ids)
    order = np.argsort(codes, kind="stable")  # rows grouped by user, as compare() needs
    content = np.concatenate(
        [base["content"].to_numpy(dtype=object), cand["content"].to_numpy(dtype=object)]
    )[order]
    is_candidate = order >= n_base
    with worker_pool(len(order)) as workers:
        # Hygiene (candidate rows only) runs in the workers alongside the similarity tasks.
        flags_later = flag_rows_later(cand["content"], policy.min_chars, policy.max_chars, workers)
        sims = compare(
            content,
            codes[order],
            is_candidate,
            policy.duplicate_threshold,
            max_pairs=policy.max_examples,
            workers=workers,
        )
        flags = flags_later()
    flagged = np.r_[np.zeros(n_base, dtype=bool), flags.any(axis=1).to_numpy()]
    request = np.concatenate(
        [base["request_id"].to_numpy(dtype=object), cand["request_id"].to_numpy(dtype=object)]
    )
    rows = pd.DataFrame(
        {
            "user_id": user_ids[order],
            "content": content,
            "is_candidate": is_candidate,
            "request_id": request[order],
            "flagged": flagged[order],
        }
    )
    users = _per_user(rows, codes[order], np.asarray(distinct_users, dtype=object), sims, policy)
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
