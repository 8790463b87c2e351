"""Which old ARCHIVED rows a run may delete ahead of its upgrade: only ids ARCHIVED both in
its backup and in the reading the upgrade is planned from."""

from __future__ import annotations

import pytest

import core.prune
from core.prune import prune_batches
from core.state import IdSnapshot


def test_only_ids_archived_in_the_backup_and_still_archived_are_pruned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core.prune, "PRUNE_BATCH", 2)
    backed_up = IdSnapshot(
        archived={"a1": "u", "a2": "u", "a3": "u", "gone-since": "u", "restored-since": "u"},
    )
    planned = IdSnapshot(
        current={"restored-since": "u"},  # ARCHIVED in the backup, CURRENT again now
        archived={"a1": "u", "a2": "u", "a3": "u", "archived-since": "u"},  # not backed up
    )
    assert prune_batches(backed_up, planned, above=0) == [["a1", "a2"], ["a3"]]


def test_nothing_is_pruned_at_or_below_the_threshold() -> None:
    snapshot = IdSnapshot(archived={f"a{n}": "u" for n in range(5)})
    assert prune_batches(snapshot, snapshot, above=5) == []
    assert sum(map(len, prune_batches(snapshot, snapshot, above=4))) == 5
