"""The evaluation gate as a task: evaluate, then publish the report as artifacts."""

from __future__ import annotations

from typing import Any, Literal

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from gate import GatePolicy, GateReport, evaluate, frame_from_rows


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


@task(name="evaluation-gate", cache_policy=NO_CACHE)
def run_gate(
    candidate_rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]],
    policy: GatePolicy,
    kind: Literal["profiles", "playbooks"],
    artifact_prefix: str,
) -> GateReport:
    """Gate PENDING (candidate) against CURRENT (baseline); Markdown + table artifacts."""
    report = evaluate(
        frame_from_rows(candidate_rows, kind),
        frame_from_rows(baseline_rows, kind),
        policy=policy,
        kind=kind,
    )
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
