"""Resolving a lost upgrade answer from the PENDING counts read afterwards."""

import pytest

from core.upgrade import QUIET_READS, resolve


@pytest.mark.parametrize(
    ("reads", "resolution"),
    [
        ([], "running"),
        ([0], "applied"),
        ([None, None, 0], "applied"),
        ([4] * QUIET_READS, "not_applied"),
        ([4] * (QUIET_READS - 1), "running"),
        ([None] * 10, "running"),  # a server that does not answer is busy with it
        ([4, 4, None, 4, 4], "running"),
        ([4, 2, 2, 2], "running"),  # promoting: fewer PENDING, not yet none
        ([4, 4, 4, 4], "not_applied"),
    ],
)
def test_resolve(reads, resolution):
    assert resolve(4, reads) == resolution


def test_nothing_pending_before_is_never_applied_by_this_upgrade():
    assert resolve(0, [0, 0, 0]) == "not_applied"
