"""The rerun-yield check: users with candidate rows against the users the rerun processed."""

from __future__ import annotations

import pandas as pd
import pytest

from gate import GatePolicy, RunScope, Severity, evaluate, with_scope
from gate.checks import rerun_yield


@pytest.mark.parametrize(
    ("with_rows", "severity"),
    [
        (100, Severity.PASS),
        (90, Severity.PASS),
        (89, Severity.WARN),
        (75, Severity.WARN),
        (74, Severity.FAIL),
        (70, Severity.FAIL),
    ],
)
def test_edges_of_the_band(with_rows: int, severity: Severity):
    assert rerun_yield(100, with_rows, GatePolicy()).severity is severity


def test_nothing_processed_passes_only_when_the_scope_holds_no_rows():
    check = rerun_yield(0, 0, GatePolicy())
    assert check.severity is Severity.PASS and "no users processed" in check.message


@pytest.mark.parametrize(("processed", "scope_rows", "with_rows"), [(0, 5, 0), (-1, 0, 3)])
def test_nothing_processed_fails_when_the_scope_holds_rows(processed, scope_rows, with_rows):
    check = rerun_yield(processed, with_rows, GatePolicy(), scope_rows=scope_rows)
    assert check.severity is Severity.FAIL
    assert f"reported {processed} users processed" in check.message
    assert "no evidence" in check.message


def test_the_report_gains_the_check_and_its_verdict():
    rows = [
        {
            "user_id": f"u{n}",
            "row_id": f"r{n}",
            "request_id": f"q{n}",
            "content": f"u{n} likes tea {n}",
        }
        for n in range(7)
    ]
    frame = pd.DataFrame(rows)
    report = evaluate(frame, frame, GatePolicy(), "profiles", workers=1)
    assert report.verdict is Severity.PASS
    assert with_scope(report, frame, frame, None) is report
    judged = with_scope(report, frame, frame, RunScope(processed={"": 10}))  # 7 of 10 got rows
    assert judged.verdict is Severity.FAIL
    assert judged.checks[-1].name == "rerun yield" and judged.checks[-1].value == 0.7
