"""The gate told about a run's reruns and scope (gate/scope.py): yield and volume per
source, a rerun that reports nothing processed, and the notes on what is replaced."""

from __future__ import annotations

import pandas as pd

from core.live import Scope
from gate import GatePolicy, RunScope, Severity, evaluate, with_scope
from gate.scope import has_no_source, rows_by_source, unsourced


def rows(users: int, source: str | None, tag: str, what: str = "said") -> list[dict]:
    """One row per user of `source`; `tag` names the generation, `what` the fact."""
    return [
        {
            "user_id": f"u{n}",
            "row_id": f"{tag}-{source}-{what}-{n}",
            "request_id": f"q-{tag}",
            "content": f"u{n} {what} something about {source} number {n}",
            "source": source,
        }
        for n in range(users)
    ]


def judged(candidate: list[dict], baseline: list[dict], scope: RunScope):
    cand, base = pd.DataFrame(candidate), pd.DataFrame(baseline)
    report = evaluate(cand, base, GatePolicy(), "profiles", workers=1)
    return report, with_scope(report, cand, base, scope)


def checks_of(report) -> dict[str, Severity]:
    return {c.name: c.severity for c in report.checks}


def test_a_source_that_yields_nothing_fails_though_the_other_yields_for_everyone():
    """sources=[chat, email], 20 users each; the email rerun gave 2 users rows. Judged in
    total (the larger of the processed counts, every candidate row) this only warns."""
    base = rows(20, "chat", "c") + rows(20, "email", "c")
    extra = rows(10, "chat", "p", "bought tickets for the opera and")
    cand = rows(20, "chat", "p") + rows(2, "email", "p") + extra
    report, scoped = judged(cand, base, RunScope(processed={"chat": 20, "email": 20}))
    assert report.verdict is Severity.WARN  # volume 32/40 = 0.8: the old blind spot
    found = checks_of(scoped)
    assert found["rerun yield (chat)"] is Severity.PASS
    assert found["rerun yield (email)"] is Severity.FAIL
    assert found["volume (chat)"] is Severity.WARN  # 30 rows for 20
    assert found["volume (email)"] is Severity.FAIL
    assert scoped.verdict is Severity.FAIL
    email = next(c for c in scoped.checks if c.name == "rerun yield (email)")
    assert "2 of the 20 users the email rerun processed" in email.message


def test_one_rerun_keeps_the_single_yield_check():
    base = rows(10, "chat", "c")
    _, scoped = judged(rows(10, "chat", "p"), base, RunScope(processed={"chat": 10}))
    assert [c.name for c in scoped.checks if "yield" in c.name or "volume (" in c.name] == [
        "rerun yield"
    ]
    assert scoped.verdict is Severity.PASS


def test_per_source_volume_is_skipped_when_baseline_rows_carry_no_source():
    """With replace_unsourced_rows the baseline holds source-less rows (H15): no source's
    own volume can be told; the total volume and the per-source yields still judge."""
    base = rows(10, None, "c")
    cand = rows(10, "chat", "p") + rows(10, "email", "p")
    _, scoped = judged(cand, base, RunScope(processed={"chat": 10, "email": 10}))
    names = {c.name for c in scoped.checks}
    assert {"rerun yield (chat)", "rerun yield (email)", "volume"} <= names
    assert not {"volume (chat)", "volume (email)"} & names


def test_nothing_processed_with_rows_in_scope_fails():
    base = rows(5, "chat", "c")
    report, scoped = judged(
        rows(5, "chat", "p"), base, RunScope(processed={"": 0}, scope_rows={"": 5})
    )
    assert report.verdict is Severity.PASS
    assert checks_of(scoped)["rerun yield"] is Severity.FAIL


def test_the_notes_are_a_passing_scope_check_the_report_shows():
    base = rows(4, None, "c")
    note = "4 CURRENT profiles of 4 user(s) carry no source (H15) and are replaced."
    _, scoped = judged(rows(4, "chat", "p"), base, RunScope(processed={"chat": 4}, notes=[note]))
    scope = next(c for c in scoped.checks if c.name == "scope")
    assert scope.severity is Severity.PASS and scope.message == note
    assert note in scoped.to_markdown()


def test_rows_without_a_source_count_for_every_source():
    frame = pd.DataFrame(rows(2, "chat", "a") + rows(3, "email", "a") + rows(1, None, "a"))
    assert rows_by_source(frame, ["chat", "email", "sms"]) == {"chat": 3, "email": 4, "sms": 1}
    assert rows_by_source(frame, [""]) == {"": 6}


def test_one_rule_for_rows_without_a_source_over_rows_and_frames():
    """The live scope (one row at a time) and the gate (a frame) agree on which rows carry
    no source: missing, None, NaN or blank."""
    sources = [None, float("nan"), "", "  ", "chat", " email "]
    frame = pd.DataFrame({"source": sources})
    by_row = [has_no_source(source) for source in sources]
    assert by_row == [True, True, True, True, False, False]
    assert unsourced(frame).tolist() == by_row
    scope = Scope(sources=("chat",))
    assert [scope.covers({"source": s}) for s in sources] == [False] * 4 + [True, False]
    assert Scope(sources=("chat",), unsourced=True).covers({"source": "  "})
