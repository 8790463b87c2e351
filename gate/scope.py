"""What the gate is told about a run beyond its rows: each rerun's own user count, the
rows its scope holds, and what the upgrade replaces that the candidate was not learned
from. A run rerun per source is judged per source too: one source's loss must not hide
behind another's yield (docs/gate.md, *Runs scoped to sources or a time window*)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from gate import checks
from gate.report import GateReport

ALL_SOURCES = ""
"""The key of a run's one rerun over every source."""


class RunScope(BaseModel):
    """A run's reruns and scope, as the gate sees them."""

    model_config = ConfigDict(frozen=True)

    processed: dict[str, int]
    """Users each rerun reported processing, by its source (ALL_SOURCES: one rerun over
    every source)."""
    scope_rows: dict[str, int] = Field(default_factory=dict)
    """CURRENT rows in the run's scope before the rerun (every user), by the same keys."""
    notes: list[str] = Field(default_factory=list)
    """What the upgrade replaces beyond what the candidate was learned from, in words."""


def has_no_source(source: object) -> bool:
    """The rule for a row that carries no source (H15: rows a rerun without a source
    wrote): missing, None/NaN or blank."""
    return source is None or pd.isna(source) or not str(source).strip()


def unsourced(frame: pd.DataFrame) -> pd.Series:
    """Which rows carry no source: `has_no_source` over a frame's column, vectorised."""
    if "source" not in frame.columns:
        return pd.Series(True, index=frame.index)
    source = frame["source"]
    return source.isna() | (source.astype(str).str.strip() == "")


def of_source(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The rows of one source (ALL_SOURCES: every row)."""
    if source == ALL_SOURCES:
        return frame
    if "source" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["source"] == source]


def rows_by_source(frame: pd.DataFrame, sources: Iterable[str]) -> dict[str, int]:
    """Rows per source; a row without a source counts for every named source (it may hold
    what any of them taught, H15)."""
    extra = int(unsourced(frame).sum())
    return {
        s: len(frame) if s == ALL_SOURCES else len(of_source(frame, s)) + extra for s in sources
    }


def with_scope(
    report: GateReport, candidate: pd.DataFrame, baseline: pd.DataFrame, scope: RunScope | None
) -> GateReport:
    """The report with the rerun-yield check of each rerun, the volume of each source when
    the run reran several (unless baseline rows carry no source: then only in total), and
    the scope's notes as a `scope` check that passes (read it: it says what is replaced)."""
    if scope is None:
        return report
    several = len(scope.processed) > 1
    for source, processed in scope.processed.items():
        rows = of_source(candidate, source)
        report = report.with_check(
            checks.rerun_yield(
                processed,
                int(rows["user_id"].nunique()),
                report.policy,
                source=source if several else None,
                scope_rows=scope.scope_rows.get(source, 0),
            )
        )
    if several and not unsourced(baseline).any():
        for source in scope.processed:
            cand, base = len(of_source(candidate, source)), len(of_source(baseline, source))
            report = report.with_check(checks.row_volume(cand, base, report.policy, source))
    if scope.notes:
        report = report.with_check(
            checks.Check(
                name="scope",
                value=0,
                threshold=None,
                severity=checks.Severity.PASS,
                message=" ".join(scope.notes),
            )
        )
    return report
