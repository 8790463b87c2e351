"""Property tests: identity, coverage, permutation invariance, empty inputs."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate import Severity, evaluate

WORDS = st.sampled_from(
    [
        "user",
        "prefers",
        "dark",
        "mode",
        "tea",
        "coffee",
        "berlin",
        "python",
        "remote",
        "weekly",
        "reports",
        "jazz",
        "hiking",
    ]
)
SENTENCE = st.lists(WORDS, min_size=3, max_size=12).map(" ".join)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def generations(draw) -> pd.DataFrame:
    """A frame of 1-4 users with 1-5 distinct rows each."""
    rows = []
    for user in range(draw(st.integers(1, 4))):
        texts = draw(st.lists(SENTENCE, min_size=1, max_size=5, unique=True))
        rows += [(f"u{user}", f"u{user}-{i}", t) for i, t in enumerate(texts)]
    return pd.DataFrame(rows, columns=["user_id", "row_id", "content"]).assign(request_id="r1")


@SETTINGS
@given(generations())
def test_identical_inputs_pass_with_full_retention(frame):
    report = evaluate(frame, frame)
    retention = next(c for c in report.checks if c.name == "retention")
    assert retention.value == 1.0
    assert all(c.severity is Severity.PASS for c in report.checks if c.name != "duplication"), (
        report.checks
    )


@SETTINGS
@given(generations(), st.data())
def test_dropping_a_users_rows_fails_coverage(frame, data):
    user = data.draw(st.sampled_from(sorted(frame.user_id.unique())))
    report = evaluate(frame[frame.user_id != user], frame)
    coverage = next(c for c in report.checks if c.name == "coverage")
    assert coverage.severity is Severity.FAIL and coverage.value == 1
    assert report.verdict is Severity.FAIL


@SETTINGS
@given(generations(), generations(), st.randoms(use_true_random=False))
def test_permuting_rows_does_not_change_the_verdict(candidate, baseline, rnd):
    def shuffled(f: pd.DataFrame) -> pd.DataFrame:
        order = list(range(len(f)))
        rnd.shuffle(order)
        return f.iloc[order]

    first = evaluate(candidate, baseline)
    second = evaluate(shuffled(candidate), shuffled(baseline))
    assert second.verdict == first.verdict
    assert [(c.name, c.value, c.severity) for c in second.checks] == [
        (c.name, c.value, c.severity) for c in first.checks
    ]


@SETTINGS
@given(generations())
def test_empty_inputs_give_a_defined_verdict_with_a_message(frame):
    empty = frame.iloc[:0]
    assert evaluate(empty, frame).verdict is Severity.FAIL
    assert evaluate(frame, empty).verdict in (Severity.PASS, Severity.WARN)
    both = evaluate(empty, empty)
    assert both.verdict is Severity.WARN
    for report in (evaluate(empty, frame), both):
        assert report.summary_sentence()
        assert all(c.message for c in report.checks)
