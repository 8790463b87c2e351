"""The rerun-yield check: users with candidate rows against the users the rerun processed."""

from __future__ import annotations

import pandas as pd
import pytest

from gate import GatePolicy, Severity, evaluate, with_rerun_yield
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


def test_nothing_processed_passes_and_says_so():
    check = rerun_yield(0, 0, GatePolicy())
    assert check.severity is Severity.PASS and "no users processed" in check.message


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
    assert with_rerun_yield(report, None) is report
    judged = with_rerun_yield(report, 10)  # 7 of 10 processed users got rows
    assert judged.verdict is Severity.FAIL
    assert judged.checks[-1].name == "rerun yield" and judged.checks[-1].value == 0.7
