"""Every delete of an id list that grows with the data goes DELETE_BATCH ids a request: the
client refuses more than MAX_IDS_PER_DELETE in one."""

from __future__ import annotations

from typing import Any

import pytest

import tasks.server
from reflexio_api._requests import MAX_IDS_PER_DELETE, delete_profiles
from tasks.server import (
    DELETE_BATCH,
    delete_profiles_in_batches,
    delete_user_playbooks_in_batches,
)


def test_the_batch_is_one_the_client_accepts():
    assert 0 < DELETE_BATCH <= MAX_IDS_PER_DELETE
    delete_profiles(["x"] * DELETE_BATCH)  # builds the request without raising
    with pytest.raises(ValueError, match="1 to 10000 ids"):
        delete_profiles(["x"] * (MAX_IDS_PER_DELETE + 1))


@pytest.mark.parametrize(
    ("helper", "task"),
    [
        (delete_profiles_in_batches, "delete_profiles"),
        (delete_user_playbooks_in_batches, "delete_user_playbooks"),
    ],
)
def test_any_number_of_ids_is_deleted_in_accepted_batches(
    monkeypatch: pytest.MonkeyPatch, helper: Any, task: str
):
    calls: list[list[Any]] = []

    def delete(settings: Any, ids: list[Any]) -> int:
        assert len(ids) <= MAX_IDS_PER_DELETE
        calls.append(ids)
        return len(ids)

    monkeypatch.setattr(tasks.server, task, delete)
    ids = list(range(2 * DELETE_BATCH + 1))

    assert helper(None, iter(ids)) == len(ids)
    assert [len(c) for c in calls] == [DELETE_BATCH, DELETE_BATCH, 1]
    assert [i for c in calls for i in c] == ids
    calls.clear()
    assert helper(None, []) == 0 and calls == []
