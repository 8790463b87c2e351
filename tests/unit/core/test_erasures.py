"""Erasure records: appended per server, read strictly, compared with a backup's time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.backup_store import FsspecStore
from core.erasures import (
    FORMAT,
    ErasureRecordError,
    erased_since,
    erasure_name,
    read_erasures,
    record_erasures,
)

SERVER = "127.0.0.1:8081"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_records_append_and_the_latest_time_per_user_wins(tmp_path: Path):
    records = tmp_path / "records"
    where = record_erasures(records, SERVER, ["ann", "ben"], T0)
    record_erasures(records, SERVER, ["ann"], T0 + timedelta(days=2))

    path = records / "erasures-127-0-0-1-8081.jsonl"
    assert where == str(path)
    assert len(path.read_text().splitlines()) == 3
    assert read_erasures(records, SERVER) == {"ann": T0 + timedelta(days=2), "ben": T0}


def test_records_in_a_remote_store_append_too(tmp_path: Path):
    store = FsspecStore(f"memory://erasures-{tmp_path.name}")
    where = record_erasures(store, SERVER, ["ann"], T0)
    record_erasures(store, SERVER, ["ben"], T0 + timedelta(days=1))

    assert where == f"memory://erasures-{tmp_path.name}/erasures-127-0-0-1-8081.jsonl"
    assert len(store.read_bytes(erasure_name(SERVER)).splitlines()) == 2
    assert store.list() == [erasure_name(SERVER)], "no temporary file is left"
    assert read_erasures(store, SERVER) == {"ann": T0, "ben": T0 + timedelta(days=1)}


def test_no_file_means_nobody_was_erased(tmp_path: Path):
    assert read_erasures(tmp_path, SERVER) == {}
    assert read_erasures(FsspecStore(f"memory://none-{tmp_path.name}"), SERVER) == {}


def test_only_users_erased_after_the_backup_count():
    erasures = {"before": T0 - timedelta(seconds=1), "after": T0 + timedelta(seconds=1)}
    assert erased_since(erasures, T0) == {"after"}
    assert erased_since(erasures, T0.replace(tzinfo=None)) == {"after"}


@pytest.mark.parametrize(
    "line",
    [
        '{"format": "reflexio-pipelines-erasure/1", "server": "127.0.0.1:8081", "user_id": "a"',
        json.dumps({"format": "other", "server": SERVER, "user_id": "a", "erased_at": "x"}),
        json.dumps({"format": FORMAT, "server": SERVER, "user_id": "", "erased_at": "x"}),
        json.dumps(
            {"format": FORMAT, "server": SERVER, "user_id": "a", "erased_at": "2026-03-01T12:00"}
        ),
        "[1, 2]",
    ],
    ids=["cut-off", "format", "no-user", "no-zone", "not-an-object"],
)
def test_a_bad_line_is_an_error_naming_the_line(tmp_path: Path, line: str):
    record_erasures(tmp_path, SERVER, ["ann"], T0)
    with (tmp_path / erasure_name(SERVER)).open("a") as out:
        out.write(line + "\n")

    with pytest.raises(ErasureRecordError, match=r"line 2, is not an erasure record.*Fix or"):
        read_erasures(tmp_path, SERVER)


def test_records_of_another_server_are_refused(tmp_path: Path):
    record_erasures(tmp_path, "10.0.0.1:8081", ["ann"], T0)
    (tmp_path / erasure_name("10.0.0.1:8081")).rename(tmp_path / erasure_name(SERVER))

    with pytest.raises(ErasureRecordError, match=r"10\.0\.0\.1:8081.*another server"):
        read_erasures(tmp_path, SERVER)


def test_an_unreadable_file_is_an_error(tmp_path: Path):
    (tmp_path / erasure_name(SERVER)).write_bytes(b"\xff\xfe not utf-8")

    with pytest.raises(ErasureRecordError, match="Cannot read the erasure records"):
        read_erasures(tmp_path, SERVER)


def test_a_records_path_that_is_a_file_is_an_error(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    with pytest.raises(ErasureRecordError, match="nobody was erased"):
        record_erasures(blocker, SERVER, ["ann"], T0)
