"""A second holding more rows than one answer carries, on the real server: after an upgrade
every row it moved carries the upgrade's second (at 1M rows one answer of them outlasts the
server's request limit), so the listing reads that second in created_at windows
(reflexio_api/paging.py). A small split_limit makes the case cheap: 3,000 rows, answers of
at most 500."""

from __future__ import annotations

import time

import httpx
import pytest

from local_stack.bulk_seed import ProfileSeed
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings

pytestmark = pytest.mark.integration

MOVED = 3_000
SPLIT_LIMIT = 500


def test_an_upgraded_second_larger_than_an_answer_is_listed_completely(stack: LocalStack):
    stack.restore("seeded")
    try:
        base = int(time.time()) - 86_400
        seeded = stack.bulk_seed(
            [
                ProfileSeed("current", MOVED, users=600, id_prefix="split", base_time=base),
                ProfileSeed("pending", 10, users=10, id_prefix="split", base_time=base),
            ]
        )
        sent: list[httpx.Request] = []
        with ReflexioClient(ReflexioSettings(url=stack.url, read_timeout_s=120)) as client:
            moved = {p.profile_id for p in client.list_profiles("current")}
            assert seeded.profile_ids("current") <= moved
            result = client.upgrade_profiles(only_affected_users=False)
            assert result.profiles_archived == len(moved), result
            client._http.event_hooks["request"].append(sent.append)
            pages = client.iter_profiles("archived", page_size=250, split_limit=SPLIT_LIMIT)
            listed = [row for page in pages for row in page]
        ids = [row.profile_id for row in listed]
        assert len(ids) == len(set(ids))
        assert set(ids) == moved  # every row the upgrade archived, by id
        assert len({row.last_modified_timestamp for row in listed}) == 1  # one second
        windows = [r for r in sent if r.url.params.get("date_field") == "created_at"]
        assert len(windows) >= MOVED // SPLIT_LIMIT
        assert max(int(r.url.params["limit"]) for r in sent) == SPLIT_LIMIT
    finally:
        stack.restore("seeded")
