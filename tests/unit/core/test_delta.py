"""Merging a pass's snapshot and delta (core/delta.py) and the count check that follows
(core/listing.check_delta_against_statistics), row by row."""

from __future__ import annotations

import pytest

from core.delta import MOVE_SLACK_S, DeltaProof
from core.kinds import PROFILES
from core.listing import ListingNotProven, check_delta_against_statistics
from core.state import Counts, IdSnapshot

SINCE = 1_000_000
FAR = 4_102_444_800


def row(pid: str, status: str | None, second: int, expires: int = FAR) -> dict:
    return {
        "profile_id": pid,
        "user_id": "u",
        "status": status,
        "last_modified_timestamp": second,
        "expiration_timestamp": expires,
    }


def feed(proof: DeltaProof, page: list[dict]) -> tuple[list, dict]:
    """What consume does: take, then the sinks' snapshot takes the rows."""
    rows, replaces = proof.take(page)
    proof.snapshot.add(PROFILES, rows)
    return rows, replaces


@pytest.fixture
def proof() -> DeltaProof:
    return DeltaProof(PROFILES, since=SINCE, count_at=SINCE + 900, snapshot=IdSnapshot())


def test_unchanged_rows_pass_once_and_the_delta_adds_nothing(proof: DeltaProof):
    feed(proof, [row("old", None, SINCE - 50), row("fresh", None, SINCE + 10)])
    proof.begin_delta(SINCE + 950)
    rows, replaces = feed(proof, [row("fresh", None, SINCE + 10)])  # the same version
    assert rows == [] and replaces == {}
    assert proof.finish() == set()
    summary = proof.summary()
    assert summary.held == Counts(2, 0, 0) and summary.changed == 0


def test_a_moved_row_replaces_its_snapshot_version_and_counts_as_moved_out(proof: DeltaProof):
    feed(proof, [row("a", None, SINCE - 50)])
    proof.begin_delta(SINCE + 950)
    rows, replaces = feed(proof, [row("a", "archived", SINCE + 940)])
    assert [r["profile_id"] for r in rows] == ["a"] and replaces == {"a": "current"}
    proof.finish()
    assert proof.snapshot.archived == {"a": "u"} and proof.snapshot.current == {}
    summary = proof.summary()
    assert summary.held == Counts(0, 0, 1) and summary.moved_out == Counts(1, 0, 0)


def test_a_move_stamped_well_before_the_statistics_excuses_nothing(proof: DeltaProof):
    feed(proof, [row("a", None, SINCE - 50)])
    proof.begin_delta(SINCE + 950)
    feed(proof, [row("a", "archived", SINCE + 950 - MOVE_SLACK_S - 1)])
    proof.finish()
    assert proof.summary().moved_out == Counts(0, 0, 0)  # it had left before the count


def test_a_recent_row_no_delta_lists_has_left_and_is_dropped(proof: DeltaProof):
    feed(proof, [row("learned", None, SINCE + 5), row("old", None, SINCE - 5)])
    proof.begin_delta(SINCE + 950)
    gone = proof.finish()
    assert gone == {"learned"}  # deleted or superseded during the pass
    proof.snapshot.discard(gone)
    summary = proof.summary()
    assert summary.gone == 1 and summary.held == Counts(1, 0, 0)
    assert summary.moved_out == Counts(1, 0, 0)  # it may have left after the count


def test_within_the_delta_the_later_second_wins(proof: DeltaProof):
    feed(proof, [row("a", None, SINCE - 50)])
    proof.begin_delta(SINCE + 950)
    feed(proof, [row("a", None, SINCE + 930)])  # listed in CURRENT's delta
    rows, _ = feed(proof, [row("a", "archived", SINCE + 920)])  # an older version elsewhere
    assert rows == []
    assert proof.snapshot.status_of("a") == "current"


def test_expired_rows_are_held_but_not_counted(proof: DeltaProof):
    feed(proof, [row("x", "archived", SINCE - 5, expires=SINCE)])
    proof.begin_delta(SINCE + 950)
    proof.finish()
    assert proof.summary().held == Counts(0, 0, 0)
    assert proof.snapshot.status_of("x") == "archived"  # listed, so held


def test_a_walk_revisit_in_the_snapshot_replaces_without_counting_twice(proof: DeltaProof):
    feed(proof, [row("a", None, SINCE + 50)])
    rows, replaces = feed(proof, [row("a", None, SINCE + 20)])  # restamped backwards
    assert replaces == {"a": "current"} and len(rows) == 1
    proof.begin_delta(SINCE + 950)
    feed(proof, [row("a", None, SINCE + 20)])
    proof.finish()
    assert proof.summary().held == Counts(1, 0, 0)


def test_the_check_passes_with_what_left_and_fails_on_a_missing_row():
    check_delta_against_statistics(
        "profiles", Counts(10, 0, 5), Counts(1, 0, 0), Counts(11, 0, 5), ("current", "archived")
    )
    check_delta_against_statistics(  # more held than counted: live inserts after the count
        "profiles", Counts(12, 0, 5), Counts(0, 0, 0), Counts(11, 0, 5), ("current",)
    )
    with pytest.raises(ListingNotProven, match=r"archived: 4 unexpired .* 1 row\(s\) missing"):
        check_delta_against_statistics(
            "profiles", Counts(10, 0, 4), Counts(0, 0, 0), Counts(10, 0, 5), ("archived",)
        )
