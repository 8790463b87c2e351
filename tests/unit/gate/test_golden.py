"""Golden-set scoring: an item is found at its own threshold, precision counts the rows no
expected item accounts for, empty sides are defined, and the report names every miss."""

from __future__ import annotations

import pytest

from gate import GatePolicy, Severity
from gate.golden import Expected, Generated, GoldenKind, score


def _expected(text: str, threshold: float = 0.5, user: str = "bob", kind: GoldenKind = "profiles"):
    return Expected(user, kind, text, threshold, f"{user} {kind} {text[:10]}")


def _row(text: str, row_id: str, user: str = "bob", kind: GoldenKind = "profiles") -> Generated:
    return Generated(user, kind, text, row_id)


VEG = "The user is vegetarian and cooks every evening"
VEG_ROW = _row("The user is a vegetarian who cooks in the evening", "p1")


def _similarity() -> float:
    return score([_expected(VEG)], [VEG_ROW]).items[0].similarity


def test_a_rows_similarity_depends_on_the_golden_items_not_on_other_generated_rows() -> None:
    extra = [
        _row("The user plays the cello in an orchestra every evening", f"x{i}") for i in range(5)
    ]
    assert score([_expected(VEG)], [VEG_ROW, *extra]).items[0].similarity == _similarity()


def test_an_item_just_below_its_threshold_is_missed_and_just_above_is_found() -> None:
    sim = _similarity()
    assert 0.2 < sim < 0.95  # a real partial match, so both sides of it are meaningful
    above = score([_expected(VEG, sim - 0.01)], [VEG_ROW])
    below = score([_expected(VEG, sim + 0.01)], [VEG_ROW])

    assert [r.found for r in above.items] == [True]
    assert above.items[0].closest == VEG_ROW and above.unexpected == []
    assert [r.found for r in below.items] == [False]
    assert [r.item.text for r in below.missed] == [VEG]
    assert below.unexpected == [VEG_ROW]  # matched no expected item at that threshold


def test_each_item_keeps_its_own_threshold() -> None:
    rows = [_row(VEG_ROW.text, "a1", user="ann"), VEG_ROW]
    sim = score([_expected(VEG, user="ann"), _expected(VEG)], rows).items[0].similarity
    strict = _expected(VEG, sim + 0.01, user="ann")
    loose = _expected(VEG, sim - 0.01, user="bob")

    result = score([strict, loose], rows)

    assert [r.found for r in result.items] == [False, True]
    assert [g.row_id for g in result.unexpected] == ["a1"]


def test_precision_counts_extra_rows_and_recall_the_missed_items() -> None:
    expected = [_expected(VEG), _expected("The user has a dog called Pixel")]
    rows = [
        _row(VEG, "p1"),
        _row("The user has a dog named Pixel", "p2"),
        _row("The user supports a football club in Leeds", "p3"),
        _row("The user plays the cello in an orchestra", "p4"),
    ]
    result = score(expected, rows)

    assert result.recall == 1.0
    assert [g.row_id for g in result.unexpected] == ["p3", "p4"]
    assert result.precision == 0.5
    assert result.generated_rows == 4


def test_rows_of_another_user_or_kind_never_match() -> None:
    expected = [_expected(VEG, user="bob", kind="profiles")]
    rows = [_row(VEG, "x1", user="ann"), _row(VEG, "x2", user="bob", kind="playbooks")]

    result = score(expected, rows)

    assert result.missed[0].closest is None and result.missed[0].similarity == 0.0
    assert {g.row_id for g in result.unexpected} == {"x1", "x2"}


@pytest.mark.parametrize(
    ("expected", "rows", "recall", "precision"),
    [
        ([], [], 1.0, 1.0),
        ([_expected(VEG)], [], 0.0, 1.0),
        ([], [VEG_ROW], 1.0, 0.0),
    ],
)
def test_empty_sides(expected, rows, recall: float, precision: float) -> None:
    result = score(expected, rows)
    assert (result.recall, result.precision) == (recall, precision)


def test_recall_below_the_policy_floor_fails_and_the_report_lists_misses_and_extras() -> None:
    expected = [_expected(VEG), _expected("The user has a dog called Pixel")]
    rows = [_row(VEG, "p1"), _row("The user plays the cello", "p9")]
    result = score(expected, rows)
    policy = GatePolicy(golden_min_recall=0.6)

    checks = {c.name: c for c in result.checks(policy)}
    assert checks["golden recall"].severity is Severity.FAIL
    assert checks["golden recall"].value == 0.5
    assert checks["golden precision"].severity is Severity.PASS
    assert result.failed(policy)
    assert not result.failed(GatePolicy(golden_min_recall=0.5))
    assert result.failed(GatePolicy(golden_min_recall=0.5, golden_min_precision=0.6))
    report = result.markdown(policy)
    assert report.startswith("## Golden set: FAIL")
    missed = report.split("### Missed expected items (1)")[1].split("###")[0]
    assert "The user has a dog called Pixel" in missed and VEG not in missed
    unexpected = report.split("### Unexpected generated items (1)")[1]
    assert "The user plays the cello" in unexpected and "p9" in unexpected


def test_a_thousand_items_over_many_users_match_their_own_rows_only() -> None:
    """Every block of users is scored on its own rows (blocks cut at BLOCK_ROWS items)."""
    expected = [
        _expected(f"user {u} fact {k} likes topic {u * 7 + k}", 0.9, user=f"u{u}")
        for u in range(500)
        for k in range(5)
    ]
    rows = [_row(e.text, f"r{i}", user=e.user_id) for i, e in enumerate(expected) if i % 10]

    result = score(expected, rows)

    assert [r.item for r in result.missed] == expected[::10]
    assert result.unexpected == []
    assert all(r.closest is not None and r.closest.user_id == r.item.user_id for r in result.items)
