"""Silent partial loss fails the default gate; a normal regeneration passes.

H2: when the LLM provider fails part of the calls, the profile rerun still reports
`completed` and the users whose calls failed simply get no rows. The default policy must
block such a candidate (30 % or 45 % of the rows gone) and let an ordinary regeneration
(the same rows, or a few fewer, reworded or new ones) through.
"""

from __future__ import annotations

import pandas as pd
import pytest

from gate import GatePolicy, Severity, evaluate
from gate.checks import volume
from tests.unit.gate.conftest import frame

FACTS = [
    "Works night shifts at the city hospital",
    "Prefers short answers in bullet points",
    "Is allergic to hazelnuts and peanuts",
    "Cycles to work along the river every day",
    "Writes worksheets for physics lessons in LaTeX",
    "Learns Spanish with a granddaughter on Sundays",
]
USERS = [f"user-{i:02d}" for i in range(20)]


def generation(rows_per_user: int, users: list[str] = USERS) -> pd.DataFrame:
    """A few distinct facts per user, the same for every call."""
    return frame(*[(u, f"{FACTS[i]} ({u})") for u in users for i in range(rows_per_user)])


def per_user(baseline: int, candidate: int) -> pd.DataFrame:
    """A one-user table with these row counts, as the volume check reads it."""
    return pd.DataFrame({"baseline_rows": [baseline], "candidate_rows": [candidate]})


def named(report, name):
    return next(c for c in report.checks if c.name == name)


@pytest.mark.parametrize(
    ("candidate_rows", "severity"),
    [
        (55, Severity.FAIL),  # 45 % lost
        (70, Severity.FAIL),  # 30 % lost
        (74, Severity.FAIL),  # just below volume_ratio_fail_min
        (75, Severity.WARN),  # at it: only a ratio below it fails
        (84, Severity.WARN),  # just below volume_ratio_warn_min
        (85, Severity.PASS),  # at it
        (100, Severity.PASS),
        (125, Severity.PASS),  # volume_ratio_warn_max
        (126, Severity.WARN),
    ],
)
def test_default_volume_band_edges(candidate_rows, severity):
    check = volume(per_user(100, candidate_rows), GatePolicy())
    assert check.severity is severity, check.message


@pytest.mark.parametrize("lost_users", [6, 9])  # 30 % and 45 % of 20 users
def test_users_dropped_by_the_provider_fail_coverage_and_volume(lost_users):
    baseline = generation(4)
    candidate = generation(4, USERS[lost_users:])
    report = evaluate(candidate, baseline)
    coverage, vol = named(report, "coverage"), named(report, "volume")
    assert (coverage.value, coverage.severity) == (lost_users, Severity.FAIL)
    assert "H2" in coverage.message
    assert vol.value == pytest.approx(1 - lost_users / 20)
    assert vol.severity is Severity.FAIL
    assert report.verdict is Severity.FAIL
    assert "coverage:" in report.summary_sentence() and "volume:" in report.summary_sentence()


def test_rows_lost_across_every_user_fail_volume_alone():
    """No user is emptied (coverage passes): the lost 30 % shows only in the total."""
    baseline = generation(6, USERS[:10])
    position = baseline.groupby("user_id").cumcount()
    extra = (position == 4) & baseline.user_id.isin(USERS[:2])
    candidate = baseline[(position < 4) | extra]  # 42 of 60 rows
    report = evaluate(candidate, baseline)
    assert named(report, "coverage").severity is Severity.PASS
    assert named(report, "volume").value == pytest.approx(0.7)
    assert [c.name for c in report.checks if c.severity is Severity.FAIL] == ["volume"]


def test_a_normal_regeneration_passes():
    """A tenth fewer rows, some reworded and a few new, as a prompt change gives."""
    baseline = generation(5)
    position = baseline.groupby("user_id").cumcount()
    kept = baseline[(position < 4) | baseline.user_id.isin(USERS[10:])]  # 90 of 100 rows
    reworded = kept.assign(
        content=kept.content.str.replace("every day", "daily").str.replace("short", "brief")
    )
    new = frame(*[(u, f"Plays chess at the local club on Fridays ({u})") for u in USERS[:5]])
    candidate = pd.concat([reworded, new], ignore_index=True)
    report = evaluate(candidate, baseline)
    assert named(report, "volume").value == pytest.approx(0.95)
    assert report.verdict is Severity.PASS, report.summary_sentence()
