"""The gate's checks. Each takes the per-user table (and row flags) and returns a Check.

The per-user table has one row per user with columns baseline_rows, candidate_rows,
retained_rows, novel_rows, baseline_duplicate_rows, candidate_duplicate_rows, request_ids.
"""

from __future__ import annotations

from enum import StrEnum

import pandas as pd
from pydantic import BaseModel

from gate.hygiene import FLAGS
from gate.policy import GatePolicy

FIRST_GENERATION = "No baseline: first generation"


class Severity(StrEnum):
    """Outcome of a check; the verdict is the worst of them."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class Check(BaseModel):
    """One measured value, the threshold it was held to, its severity and a plain sentence."""

    name: str
    value: float
    threshold: float | None
    severity: Severity
    message: str


def _severity(fail: bool, warn: bool = False) -> Severity:
    return Severity.FAIL if fail else Severity.WARN if warn else Severity.PASS


def _pct(share: float) -> str:
    return f"{share:.1%}"


def coverage(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Users who have baseline rows and would have none after the upgrade."""
    threshold = float(policy.max_lost_users)
    had = users["baseline_rows"] > 0
    lost = int((had & (users["candidate_rows"] == 0)).sum())
    baseline_rows = int(users["baseline_rows"].sum())
    if not had.any():
        return Check(
            name="coverage",
            value=0,
            threshold=threshold,
            severity=Severity.PASS,
            message=f"{FIRST_GENERATION}, so no user can lose rows.",
        )
    if users["candidate_rows"].sum() == 0:
        message = (
            f"The candidate generation is empty while the baseline has {baseline_rows} rows for "
            f"{lost} users: the rerun produced nothing (hazard H2, a silently failed rerun), "
            "and upgrading would leave every one of them with no rows."
        )
    else:
        message = (
            f"{lost} of {int(had.sum())} users with baseline rows have no candidate row "
            f"(allowed: {policy.max_lost_users})"
            + (
                ": the rerun produced nothing for them, as when the LLM provider silently "
                "fails part of the calls (H2)."
                if lost
                else "."
            )
        )
    return Check(
        name="coverage",
        value=lost,
        threshold=threshold,
        severity=_severity(lost > policy.max_lost_users),
        message=message,
    )


def volume(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Overall candidate/baseline row-count ratio."""
    return row_volume(int(users["candidate_rows"].sum()), int(users["baseline_rows"].sum()), policy)


def row_volume(cand: int, base: int, policy: GatePolicy, source: str | None = None) -> Check:
    """Candidate/baseline row-count ratio, of every row or of one source's rows."""
    name, of = ("volume", "") if source is None else (f"volume ({source})", f" of source {source}")
    if base == 0:
        severity = Severity.WARN if cand == 0 and source is None else Severity.PASS
        message = (
            f"Both generations are empty{of}: there is nothing to promote."
            if cand == 0
            else f"{FIRST_GENERATION}{of}; the candidate has {cand} rows."
        )
        return Check(name=name, value=0, threshold=None, severity=severity, message=message)
    ratio = cand / base
    fail = not policy.volume_ratio_fail_min <= ratio <= policy.volume_ratio_fail_max
    warn = not policy.volume_ratio_warn_min <= ratio <= policy.volume_ratio_warn_max
    bound = policy.volume_ratio_fail_min if ratio < 1 else policy.volume_ratio_fail_max
    return Check(
        name=name,
        value=round(ratio, 4),
        threshold=bound,
        severity=_severity(fail, warn),
        message=(
            f"The candidate has {cand} rows{of} for {base} baseline rows (ratio {ratio:.2f}; "
            f"passes within {policy.volume_ratio_warn_min}-{policy.volume_ratio_warn_max}, "
            f"fails outside {policy.volume_ratio_fail_min}-{policy.volume_ratio_fail_max})."
        ),
    )


def rerun_yield(
    users_processed: int,
    users_with_rows: int,
    policy: GatePolicy,
    *,
    source: str | None = None,
    scope_rows: int = 0,
) -> Check:
    """Of the users a rerun reports it processed, the share that got candidate rows (of
    `source`, for one rerun of several).

    A provider failing part of the calls drops those users silently (H2: the rerun still
    ends `completed`); users without new rows are then spared by only_affected_users, so
    no per-user check sees them. This compares with the rerun's own user count instead.
    A count of 0 or less is no evidence when the run's scope holds rows (`scope_rows`
    CURRENT rows in scope, or candidate rows): that fails."""
    name, of = ("rerun yield", "") if source is None else (f"rerun yield ({source})", f" {source}")
    if users_processed <= 0:
        at_stake = scope_rows > 0 or users_with_rows > 0
        return Check(
            name=name,
            value=0,
            threshold=policy.user_yield_fail_min if at_stake else None,
            severity=_severity(at_stake),
            message=(
                f"The{of} rerun reported {users_processed} users processed, yet this run's "
                f"scope holds {scope_rows} CURRENT rows and {users_with_rows} users got "
                "candidate rows: the rerun's own count gives no evidence that it worked, so "
                "the upgrade is not allowed on it. Check the operation status on the server."
                if at_stake
                else f"The{of} rerun reported no users processed, and this run's scope holds "
                "no rows."
            ),
        )
    share = min(users_with_rows / users_processed, 1.0)
    return Check(
        name=name,
        value=round(share, 4),
        threshold=policy.user_yield_fail_min,
        severity=_severity(share < policy.user_yield_fail_min, share < policy.user_yield_warn_min),
        message=(
            f"{users_with_rows} of the {users_processed} users the{of} rerun processed got "
            f"candidate rows ({_pct(share)}; passes from {_pct(policy.user_yield_warn_min)}, "
            f"fails below {_pct(policy.user_yield_fail_min)}); the others were dropped "
            "without an error, as a provider failing part of the calls does (H2)."
        ),
    )


def user_volume(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Share of users (with rows on both sides) whose own ratio is outside the per-user band."""
    both = users[(users["baseline_rows"] > 0) & (users["candidate_rows"] > 0)]
    threshold = policy.user_volume_fail_share
    if both.empty:
        return Check(
            name="user_volume",
            value=0,
            threshold=threshold,
            severity=Severity.PASS,
            message="No user has rows on both sides, so there are no per-user ratios to compare.",
        )
    ratio = both["candidate_rows"] / both["baseline_rows"]
    outside = int(
        ((ratio < policy.user_volume_ratio_min) | (ratio > policy.user_volume_ratio_max)).sum()
    )
    share = outside / len(both)
    return Check(
        name="user_volume",
        value=round(share, 4),
        threshold=threshold,
        severity=_severity(share > threshold, outside > 0),
        message=(
            f"{outside} of {len(both)} users ({_pct(share)}) have a candidate/baseline ratio "
            f"outside {policy.user_volume_ratio_min}-{policy.user_volume_ratio_max} "
            f"(fails above {_pct(threshold)} of users)."
        ),
    )


def retention(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Share of baseline rows whose best same-user candidate row is similar enough."""
    base = int(users["baseline_rows"].sum())
    if base == 0:
        return Check(
            name="retention",
            value=1,
            threshold=policy.retention_fail_min,
            severity=Severity.PASS,
            message=f"{FIRST_GENERATION}, so nothing can be lost.",
        )
    kept = int(users["retained_rows"].sum())
    share = kept / base
    low_users = int(((users["retained_rows"] == 0) & (users["baseline_rows"] > 0)).sum())
    return Check(
        name="retention",
        value=round(share, 4),
        threshold=policy.retention_fail_min,
        severity=_severity(share < policy.retention_fail_min, share < policy.retention_warn_min),
        message=(
            f"{kept} of {base} baseline rows ({_pct(share)}) have a candidate row of the same "
            f"user with similarity >= {policy.similarity_threshold}; {low_users} users keep "
            f"none (warns below {_pct(policy.retention_warn_min)}, fails below "
            f"{_pct(policy.retention_fail_min)})."
        ),
    )


def novelty(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Share of candidate rows with no similar baseline row of the same user."""
    cand = int(users["candidate_rows"].sum())
    if users["baseline_rows"].sum() == 0 or cand == 0:
        reason = FIRST_GENERATION if cand else "The candidate has no rows"
        return Check(
            name="novelty",
            value=1 if cand else 0,
            threshold=policy.novelty_fail_max,
            severity=Severity.PASS,
            message=f"{reason}, so novelty is not judged.",
        )
    new = int(users["novel_rows"].sum())
    share = new / cand
    return Check(
        name="novelty",
        value=round(share, 4),
        threshold=policy.novelty_fail_max,
        severity=_severity(share > policy.novelty_fail_max, share > policy.novelty_warn_max),
        message=(
            f"{new} of {cand} candidate rows ({_pct(share)}) match no baseline row of the same "
            f"user (warns above {_pct(policy.novelty_warn_max)})."
        ),
    )


def duplication(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Share of candidate rows with a near-duplicate in the same user, against the baseline's."""
    cand, base = int(users["candidate_rows"].sum()), int(users["baseline_rows"].sum())
    cand_rate = users["candidate_duplicate_rows"].sum() / cand if cand else 0.0
    base_rate = users["baseline_duplicate_rows"].sum() / base if base else 0.0
    threshold = base_rate + policy.duplicate_fail_increase
    increase = cand_rate - base_rate
    reference = (
        "no baseline: first generation, compared with 0%"
        if base == 0
        else f"baseline {_pct(base_rate)}"
    )
    return Check(
        name="duplication",
        value=round(cand_rate, 4),
        threshold=round(threshold, 4),
        severity=_severity(
            increase > policy.duplicate_fail_increase, increase > policy.duplicate_warn_increase
        ),
        message=(
            f"{_pct(cand_rate)} of candidate rows have a near-duplicate (similarity >= "
            f"{policy.duplicate_threshold}) in the same user ({reference}; fails when "
            f"{_pct(policy.duplicate_fail_increase)} points higher)."
        ),
    )


def hygiene(flags: pd.DataFrame, policy: GatePolicy) -> list[Check]:
    """One check per flag group of the candidate rows: any flagged row warns, many fail."""
    checks = []
    total = len(flags)
    for group, names in FLAGS.items():
        counts = {name: int(flags[name].sum()) for name in names} if total else {}
        flagged = int(flags[list(names)].any(axis=1).sum()) if total else 0
        share = flagged / total if total else 0.0
        detail = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
        message = (
            f"{flagged} of {total} candidate rows ({_pct(share)}) are flagged"
            + (f" ({detail})" if detail else "")
            + f"; fails above {_pct(policy.hygiene_fail_share)}."
        )
        checks.append(
            Check(
                name=f"hygiene_{group}",
                value=round(share, 4),
                threshold=policy.hygiene_fail_share,
                severity=_severity(share > policy.hygiene_fail_share, flagged > 0),
                message=message,
            )
        )
    return checks


def stale_generations(users: pd.DataFrame, policy: GatePolicy) -> Check:
    """Users whose candidate rows come from more than one generating request (hazard H5)."""
    stale = int((users["request_ids"] > 1).sum())
    return Check(
        name="stale_generations",
        value=stale,
        threshold=float(policy.max_stale_users),
        severity=_severity(stale > policy.max_stale_users),
        message=(
            f"{stale} users have candidate rows from more than one request id (allowed: "
            f"{policy.max_stale_users}); more than one means earlier reruns' PENDING rows "
            "would be promoted too (hazard H5)."
        ),
    )
