"""A listing is proven complete only when it adds up with the server's own counts."""

from __future__ import annotations

import pytest

from core.listing import CountedRows, ListingNotProven, check_against_statistics
from core.state import Counts

NOW = 1_800_000_000


def test_expired_rows_are_not_counted_as_the_statistics_do_not_count_them():
    counted = CountedRows(NOW)
    counted.add(
        [
            {"status": None, "expiration_timestamp": NOW},
            {"status": None, "expiration_timestamp": NOW - 1},
            {"status": "archived", "expiration_timestamp": NOW + 5},
            {"status": "pending", "expiration_timestamp": None},
            {"status": "merged", "expiration_timestamp": NOW + 5},
        ]
    )
    assert counted.counts() == Counts(current=1, pending=0, archived=1)


def test_matching_counts_prove_the_listing():
    counts = Counts(10, 0, 25_006)
    check_against_statistics("profiles", counts, counts, counts, ("current", "archived"))


def test_a_short_listing_is_refused_with_the_numbers():
    with pytest.raises(ListingNotProven, match="archived: listed 10000 unexpired row"):
        check_against_statistics(
            "profiles",
            Counts(10, 0, 10_000),
            Counts(10, 0, 10_509),
            Counts(10, 0, 10_509),
            ("current", "archived"),
        )


def test_a_server_that_changed_while_listed_is_refused():
    with pytest.raises(ListingNotProven, match="changed from 10 to 11 while it was listed"):
        check_against_statistics(
            "profiles", Counts(11, 0, 0), Counts(10, 0, 0), Counts(11, 0, 0), ("current",)
        )


def test_only_the_listed_statuses_are_checked():
    check_against_statistics(
        "profiles", Counts(0, 3, 0), Counts(99, 3, 99), Counts(99, 3, 99), ("pending",)
    )
