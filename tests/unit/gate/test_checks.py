"""Each check on small hand-made frames: values and severities."""

from __future__ import annotations

import pandas as pd
import pytest

from gate import GatePolicy, Severity, evaluate
from tests.unit.gate.conftest import frame

BASE = frame(
    ("u1", "Prefers dark mode in the code editor"),
    ("u1", "Works as a data engineer in Berlin"),
    ("u2", "Vegetarian and allergic to peanuts"),
    ("u2", "Likes jazz music while working late"),
)


def check(report, name):
    return next(c for c in report.checks if c.name == name)


def test_identical_generation_passes_with_full_retention():
    report = evaluate(BASE, BASE)
    assert report.verdict is Severity.PASS
    assert check(report, "retention").value == 1.0
    assert check(report, "novelty").value == 0.0
    assert check(report, "volume").value == 1.0


def test_coverage_fails_when_a_user_loses_every_row():
    report = evaluate(BASE[BASE.user_id == "u1"], BASE)
    cov = check(report, "coverage")
    assert (cov.value, cov.severity) == (1, Severity.FAIL)
    assert "1 of 2 users" in cov.message
    lost = [e for e in report.examples if e.kind == "lost"]
    assert {e.user_id for e in lost} == {"u2"}


def test_coverage_allows_lost_users_up_to_the_policy():
    report = evaluate(BASE[BASE.user_id == "u1"], BASE, GatePolicy(max_lost_users=1))
    assert check(report, "coverage").severity is Severity.PASS


def test_empty_candidate_is_hazard_h2():
    report = evaluate(BASE.iloc[:0], BASE)
    assert report.verdict is Severity.FAIL
    assert "H2" in check(report, "coverage").message
    assert "silently failed rerun" in report.summary_sentence()


def test_volume_ratio_too_high_fails_and_per_user_band_is_reported():
    cand = pd.concat(
        [BASE] + [frame(("u1", f"Extra fact number {i} about hobbies")) for i in range(7)]
    )
    report = evaluate(cand, BASE)
    vol = check(report, "volume")
    assert vol.value == pytest.approx(11 / 4)
    assert vol.severity is Severity.FAIL
    per_user = check(report, "user_volume")
    assert per_user.value == 0.5  # u1 has 9 rows for 2
    assert per_user.severity is Severity.FAIL


def test_volume_slightly_low_warns():
    # 4 of 5 rows (ratio 0.8). It was 5 of 7 (0.71) when the gate failed only below 0.5; a
    # loss that size now fails (silent partial loss, tests/unit/gate/test_partial_loss.py).
    base = frame(*[("u1", f"Fact {w} about the user and their habits") for w in "abcde"])
    report = evaluate(base.iloc[:4], base)
    assert check(report, "volume").severity is Severity.WARN


def test_retention_and_novelty_of_rewritten_rows():
    cand = frame(
        ("u1", "Prefers dark mode in the code editor"),
        ("u1", "Owns three cats and a parrot"),
        ("u2", "Vegetarian and allergic to peanuts"),
        ("u2", "Plays chess every Sunday morning"),
    )
    report = evaluate(cand, BASE)
    ret, nov = check(report, "retention"), check(report, "novelty")
    assert ret.value == 0.5 and ret.severity is Severity.PASS
    assert nov.value == 0.5 and nov.severity is Severity.PASS
    table = report.per_user_frame().set_index("user_id")
    assert table.loc["u1", "retained_rows"] == 1
    assert table.loc["u2", "novel_rows"] == 1


def test_retention_is_per_user_not_across_users():
    swapped = BASE.assign(user_id=BASE.user_id.map({"u1": "u2", "u2": "u1"}))
    report = evaluate(swapped, BASE)
    assert check(report, "retention").value == 0.0
    assert check(report, "retention").severity is Severity.FAIL


def test_duplication_compared_with_baseline_rate():
    cand = frame(
        ("u1", "Prefers dark mode in the code editor"),
        ("u1", "Prefers dark mode in the code editor!"),
        ("u1", "Works as a data engineer in Berlin"),
        ("u1", "Works as a data engineer in Berlin."),
        ("u2", "Vegetarian and allergic to peanuts"),
        ("u2", "Likes jazz music while working late"),
    )
    report = evaluate(cand, BASE)
    dup = check(report, "duplication")
    assert dup.value == pytest.approx(4 / 6, abs=1e-3)
    assert dup.severity is Severity.FAIL
    assert [e.kind for e in report.examples].count("duplicated") == 2
    assert evaluate(cand, cand).checks[5].severity is Severity.PASS  # same rate as baseline


@pytest.mark.parametrize(
    ("content", "check_name"),
    [
        ("", "hygiene_length"),
        ("ok", "hygiene_length"),
        ("x" * 3000, "hygiene_length"),
        ("I'm sorry, I can't help with that request.", "hygiene_refusal_or_error"),
        ("Traceback (most recent call last):\n  File 'x.py', line 1", "hygiene_refusal_or_error"),
        ("error: upstream model returned 500", "hygiene_refusal_or_error"),
        ("RuntimeException: generation failed", "hygiene_refusal_or_error"),
        ("bin\x00\x01\x02ary junk in the profile", "hygiene_non_text"),
        ("1234 5678 #### $$$$ 9999 %%%%", "hygiene_non_text"),
        ('{"profiles": [{"content": "likes tea"}]}', "hygiene_non_text"),
    ],
)
def test_hygiene_flags_bad_content(content, check_name):
    cand = pd.concat([BASE, frame(("u1", content))], ignore_index=True)
    report = evaluate(cand, BASE)
    bad = check(report, check_name)
    assert bad.severity is Severity.FAIL  # 1 of 5 rows > 2%
    assert bad.value == pytest.approx(0.2)
    others = [c for c in report.checks if c.name.startswith("hygiene") and c.name != check_name]
    assert all(c.severity is Severity.PASS for c in others), others


def test_hygiene_leaves_ordinary_text_alone():
    cand = frame(
        ("u1", "He handles exceptions calmly; Über straße café fan"),
        ("u1", "Ships code with no errors"),
    )
    report = evaluate(cand, cand)
    assert all(c.severity is Severity.PASS for c in report.checks if c.name.startswith("hygiene"))


def test_stale_generations_fail_when_a_user_has_two_requests():
    cand = pd.concat(
        [
            BASE,
            frame(
                (
                    "u1",
                    "Left over from an earlier rerun",
                ),
                request_id="r0",
            ),
        ]
    )
    report = evaluate(cand, BASE)
    stale = check(report, "stale_generations")
    assert (stale.value, stale.severity) == (1, Severity.FAIL)
    assert "H5" in stale.message


def test_first_generation_compares_nothing_and_says_so():
    report = evaluate(BASE, BASE.iloc[:0])
    assert report.verdict is Severity.PASS
    for name in ("coverage", "volume", "retention", "novelty"):
        assert "first generation" in check(report, name).message


def test_both_empty_warns_nothing_to_promote():
    report = evaluate(BASE.iloc[:0], BASE.iloc[:0])
    assert report.verdict is Severity.WARN
    assert "nothing to promote" in report.summary_sentence()
