"""One pass over listed pages feeds the backup, the gate's frames and the id snapshot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.backup import open_backup
from core.kinds import PROFILES
from core.live import Scope
from core.sinks import BackupTarget, ReadRequest, consume, read_ahead

FUTURE = 4_102_444_800


def row(pid: str, user: str, status: str | None, source: str = "chat") -> dict:
    return {
        "profile_id": pid,
        "user_id": user,
        "content": f"{user} likes {pid}",
        "source": source,
        "generated_from_request_id": f"req-{user}",
        "status": status,
        "expiration_timestamp": FUTURE,
    }


PAGES = [
    [row("c1", "a", None), row("c2", "b", None, "email"), row("p1", "a", "pending")],
    [row("x1", "a", "archived"), row("c3", "c", None), row("m1", "a", "merged")],
]


def test_one_pass_feeds_backup_frames_snapshot_and_counts(tmp_path: Path):
    request = ReadRequest(
        ("current", "pending", "archived"),
        backup=BackupTarget(tmp_path, "http://127.0.0.1:9", "run-1"),
        baseline=Scope(sources=("chat",)),
        candidate=True,
        count_at=FUTURE,
    )
    reading = consume(PROFILES, PAGES, request)
    assert reading.snapshot.current == {"c1": "a", "c2": "b", "c3": "c"}
    assert set(reading.snapshot.pending) == {"p1"} and set(reading.snapshot.archived) == {"x1"}
    assert reading.baseline is not None and sorted(reading.baseline["row_id"]) == ["c1", "c3"]
    assert reading.candidate is not None and list(reading.candidate["row_id"]) == ["p1"]
    assert reading.counted is not None and reading.counted.counts().as_dict() == {
        "current": 3,
        "pending": 1,
        "archived": 1,
    }
    assert reading.backup is not None
    backed = [r["profile_id"] for r in open_backup(reading.backup.manifest_path).iter_rows()]
    assert backed == ["c1", "c2", "p1", "x1", "c3", "m1"]  # every row as listed


def test_a_failing_listing_leaves_no_finished_backup(tmp_path: Path):
    def pages():
        yield PAGES[0]
        raise RuntimeError("listing cut")

    request = ReadRequest(("current",), backup=BackupTarget(tmp_path, "http://h:1", "run-2"))
    with pytest.raises(RuntimeError, match="listing cut"):
        consume(PROFILES, pages(), request)
    assert not list(tmp_path.glob("*.manifest.json"))


def test_read_ahead_keeps_order_and_fetches_while_the_caller_works():
    fetched: list[int] = []

    def pages():
        for n in range(5):
            fetched.append(n)
            yield [{"n": n}]

    seen = []
    for page in read_ahead(pages()):
        time.sleep(0.05)
        seen.append(page[0]["n"])
        assert len(fetched) >= min(len(seen) + 1, 5)  # the next one is already there
    assert seen == [0, 1, 2, 3, 4]


def test_read_ahead_stops_fetching_when_the_caller_stops():
    def endless():
        n = 0
        while True:
            n += 1
            yield [{"n": n}]

    before = threading.active_count()
    for page in read_ahead(endless()):
        if page[0]["n"] == 3:
            break
    time.sleep(0.5)
    assert threading.active_count() == before
