"""Retention, with fixed times: old backups of the server go, whole and manifest first;
the newest finished backup of each kind and agent_version stays, with its siblings, and so
do other servers' backups, unfinished uploads of a running run and every other file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.backup import BackupWriter
from core.backup_store import BackupStore, FsspecStore, LocalStore
from core.retention import prune, stored_backups, to_prune

URL = "http://127.0.0.1:8081"
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def files(stem: str, live: bool = False, finished: bool = True) -> list[str]:
    names = [f"{stem}.jsonl.gz", f"{stem}.touched.json.gz"]
    names += [f"{stem}.manifest.json"] if finished else [f"{stem}.jsonl.gz.partial"]
    if live:
        names += [f"{stem}-live.jsonl.gz", f"{stem}-live.manifest.json"]
    return names


OLD = "profiles-127-0-0-1-8081-20260101T010000Z-aaaaaaaa"
OLDER = "profiles-127-0-0-1-8081-20251201T010000Z-run-1234"
NEWEST_OLD = "profiles-127-0-0-1-8081-20260201T010000Z-bbbbbbbb"
RECENT_UNFINISHED = "profiles-127-0-0-1-8081-20260331T115900Z-cccccccc"
PLAYBOOKS_OLD = "user_playbooks-127-0-0-1-8081-20260101T020000Z-dddddddd"
OTHER_SERVER = "profiles-10-0-0-7-8081-20250101T010000Z-eeeeeeee"


def test_old_backups_go_except_the_newest_finished_one_of_each_kind():
    names = (
        files(OLD, live=True)
        + files(OLDER)
        + files(NEWEST_OLD, live=True)
        + files(RECENT_UNFINISHED, finished=False)
        + files(PLAYBOOKS_OLD)
        + ["erasures-127-0-0-1-8081.jsonl", "config-127-0-0-1-8081-run.json", "notes.txt"]
    )
    backups = stored_backups(names)
    assert {b.stem for b in backups} == {
        OLD,
        OLDER,
        NEWEST_OLD,
        RECENT_UNFINISHED,
        PLAYBOOKS_OLD,
    }, "erasure records, saved configs and other files are not backups"
    by_stem = {b.stem: b for b in backups}
    assert by_stem[OLDER].run == "run-1234"
    assert by_stem[OLD].files[:2] == (f"{OLD}-live.manifest.json", f"{OLD}.manifest.json")
    assert not by_stem[RECENT_UNFINISHED].finished

    doomed = to_prune(backups, NOW, 30)

    assert {b.stem for b in doomed} == {OLD, OLDER}
    # NEWEST_OLD is 58 days old but the newest finished profile backup: kept, live file too;
    # the recent unfinished one may be a running run's upload: kept;
    # PLAYBOOKS_OLD is the only playbook backup: the newest of its kind.


def test_a_newer_finished_backup_releases_the_old_newest():
    recent = "profiles-127-0-0-1-8081-20260330T010000Z-ffffffff"
    backups = stored_backups(files(NEWEST_OLD) + files(recent))
    assert [b.stem for b in to_prune(backups, NOW, 30)] == [NEWEST_OLD]
    assert to_prune(backups, NOW, 60) == [], "58 days old is within 60 days"


def test_zero_days_keeps_everything_and_the_asking_run_is_never_pruned():
    backups = stored_backups(files(OLD) + files(OLDER) + files(NEWEST_OLD))
    assert to_prune(backups, NOW, 0) == []
    assert [b.stem for b in to_prune(backups, NOW, 30, protect_run="aaaaaaaa")] == [OLDER]


def test_lines_keep_one_newest_each():
    v2 = "user_playbooks-127-0-0-1-8081-20260102T020000Z-gggggggg"
    backups = stored_backups(files(PLAYBOOKS_OLD) + files(v2))
    versions = {PLAYBOOKS_OLD: "v1", v2: "v2"}
    assert to_prune(backups, NOW, 30, line_of=lambda b: versions[b.stem]) == []
    assert [b.stem for b in to_prune(backups, NOW, 30)] == [PLAYBOOKS_OLD]


def _backup(store: BackupStore, when: str, monkeypatch: pytest.MonkeyPatch, **kw) -> str:
    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime.strptime(when, "%Y%m%d").replace(tzinfo=UTC)

    with monkeypatch.context() as patched:
        patched.setattr("core.backup.datetime", Clock)
        with BackupWriter(store, run_id=f"{when}-run", **kw) as writer:
            writer.write([{"profile_id": "p", "user_playbook_id": 1, "user_id": "u"}])
    return writer.info.manifest_name.removesuffix(".manifest.json")


@pytest.mark.parametrize("remote", [False, True], ids=["local", "memory-url"])
def test_prune_deletes_from_the_store_by_server_and_agent_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote: bool
):
    store = FsspecStore(f"memory://prune-{tmp_path.name}") if remote else LocalStore(tmp_path)
    profiles = {"kind": "profiles", "server_url": URL}
    old = _backup(store, "20260101", monkeypatch, **profiles)
    new = _backup(store, "20260115", monkeypatch, **profiles)
    v1 = {"kind": "user_playbooks", "server_url": URL, "agent_version": "v1"}
    v1_old, v1_new = (_backup(store, d, monkeypatch, **v1) for d in ("20260102", "20260103"))
    v2 = _backup(store, "20260101", monkeypatch, **{**v1, "agent_version": "v2"})
    other = _backup(store, "20250101", monkeypatch, kind="profiles", server_url="http://h:1")
    store.append_bytes("erasures-127-0-0-1-8081.jsonl", b"{}\n")

    pruned = prune(store, "http://localhost:8081", 30, NOW, run_id="run-20260401")

    assert sorted(b.stem for b in pruned) == sorted([old, v1_old])
    left = store.list()
    assert not [n for n in left if n.startswith((old, v1_old))]
    for kept in (new, v1_new, v2, other):
        assert f"{kept}.manifest.json" in left and f"{kept}.jsonl.gz" in left
    assert "erasures-127-0-0-1-8081.jsonl" in left
