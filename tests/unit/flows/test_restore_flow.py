"""The restore flow's branches against an in-memory server (no network, no Prefect API):
default, dry run, delete_newer, erased users, and bad input that writes nothing."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import flows.restore as restore_module
import tasks.server
from core.backup import BackupWriter
from core.erasures import erasure_name, record_erasures
from core.state import Counts, ExpectedState
from core.touched import touched_name, write_touched_ids
from flows.lock import LockLost
from tasks.journal import delete_journal, load_journal
from tasks.server import DELETE_BATCH
from tests.unit.flows.fake_server import profile

URL = "http://127.0.0.1:8081"
SERVER = "127.0.0.1:8081"
USERS = ("ann", "ben", "cat")


class MemoryServer:
    """Profiles by id, listed, re-created and deleted as the real server does it."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {r["profile_id"]: dict(r) for r in rows}
        self.writes: list[str] = []

    def list_profiles(self, settings: Any, status: str) -> list[dict[str, Any]]:
        wanted = None if status == "current" else status
        return [dict(r) for r in self.rows.values() if r.get("status") == wanted]

    def profile_counts(self, settings: Any) -> Counts:
        statuses = [r.get("status") for r in self.rows.values()]
        return Counts(statuses.count(None), statuses.count("pending"), statuses.count("archived"))

    def add_profiles(self, settings: Any, rows: list[dict[str, Any]]) -> int:
        self.writes.append(f"add {len(rows)}")
        self.rows.update({r["profile_id"]: dict(r) for r in rows})
        return len(rows)

    def delete_profiles(self, settings: Any, ids: list[str]) -> int:
        if len(ids) > 10_000:  # the client's cap (reflexio_api MAX_IDS_PER_DELETE)
            raise ValueError(f"profile_ids must hold 1 to 10000 ids, got {len(ids)}")
        if ids:
            self.writes.append(f"delete {len(ids)}")
        return sum(self.rows.pop(i, None) is not None for i in ids)

    def state(self) -> dict[str, str | None]:
        return {pid: r.get("status") for pid, r in self.rows.items()}


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The flow's Prefect side switched off: artifacts captured, no events, plain logging."""
    import logging

    summaries: list[str] = []
    delete_journal(URL)  # an earlier test's failed restore may have left one
    monkeypatch.setenv("REFLEXIO_API_KEY", "sk-unit")
    monkeypatch.setattr(
        restore_module.RunSummary, "publish", lambda s, key: summaries.append(s.to_markdown())
    )
    monkeypatch.setattr(restore_module.events, "emit", lambda *a, **k: None)
    monkeypatch.setattr(restore_module, "get_run_logger", lambda: logging.getLogger("restore"))
    return summaries


def serve(monkeypatch: pytest.MonkeyPatch, server: MemoryServer) -> None:
    for name in ("list_profiles", "profile_counts", "add_profiles"):
        monkeypatch.setattr(restore_module, name, getattr(server, name))
    # The flow deletes through tasks.server's batching helper, which calls this task.
    monkeypatch.setattr(tasks.server, "delete_profiles", server.delete_profiles)


def before_rows() -> list[dict[str, Any]]:
    rows = []
    for user in USERS:
        rows += [profile(f"c-{user}-{n}", user, f"{user} fact {n}") for n in range(2)]
        rows.append(profile(f"a-{user}", user, f"{user} old fact", "archived"))
    return rows


def regenerate(where: Path | str) -> tuple[str, MemoryServer]:
    """A backup of before_rows in `where` (a directory or URL), then the server as the
    run's upgrade left it, and the touched-ids file beside the backup."""
    with BackupWriter(where, "profiles", URL, "run-1234abcd") as writer:
        writer.write(before_rows())
    manifest = writer.info.manifest_path
    after = []
    for r in before_rows():
        if r["status"] is None:
            after.append({**r, "status": "archived"})
    promoted = [profile(f"p-{u}", u, f"{u} new fact") for u in USERS]
    write_touched_ids(
        manifest,
        ExpectedState(
            promoted=frozenset(r["profile_id"] for r in promoted),
            current=frozenset(r["profile_id"] for r in promoted),
            archived=frozenset(r["profile_id"] for r in after),
            deleted=frozenset(f"a-{u}" for u in USERS),
        ),
    )
    return manifest, MemoryServer(after + promoted)


def run(**params: Any):
    return restore_module.restore_profiles.fn(reflexio_url=URL, **params)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "memory-url"])
def test_default_restore_undoes_the_run_keeps_newer_rows_and_erased_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: list[str], remote: bool
):
    where = f"memory://restore-flow-{tmp_path.name}" if remote else str(tmp_path)
    manifest, server = regenerate(where)
    assert manifest.startswith(where)
    server.rows["new-ann"] = profile("new-ann", "ann", "ann learned since")
    for pid in [p for p, r in server.rows.items() if r["user_id"] == "cat"]:
        del server.rows[pid]
    later = datetime.now(UTC) + timedelta(seconds=1)
    record_erasures(where, SERVER, ["cat"], later)
    serve(monkeypatch, server)

    dry = run(backup_file=manifest, records_dir=where, dry_run=True)
    assert dry.is_completed() and server.writes == []
    assert dry.message == (
        "Dry run, nothing written; would re-create 2, re-status 4, delete 2 promoted by the "
        "backed-up run; 1 learned since the backup kept (delete_newer=True deletes them); "
        "3 row(s) of 1 user(s) erased since the backup not restored (cat)."
    )

    done = run(backup_file=manifest, records_dir=where)

    assert done.is_completed(), done.message
    assert done.message.startswith(f"Restored from {manifest}, checked by id: re-create 2")
    expected = {r["profile_id"]: r["status"] for r in before_rows() if r["user_id"] != "cat"}
    assert server.state() == {**expected, "new-ann": None}
    assert "new-ann" in published[-1] and "cat" in published[-1]

    newer = run(backup_file=manifest, records_dir=where, delete_newer=True)
    assert newer.is_completed(), newer.message
    assert server.state() == expected


def test_a_server_that_does_not_take_the_writes_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: list[str]
):
    manifest, server = regenerate(tmp_path)
    server.add_profiles = lambda settings, rows: len(rows)  # type: ignore[method-assign]
    serve(monkeypatch, server)

    state = run(backup_file=manifest, records_dir=tmp_path, assume_no_erasures=True)

    assert state.is_failed()
    assert "Restore incomplete" in state.message and "still missing: a-ann" in state.message
    journal = load_journal(URL)  # what the next writer runs again
    assert journal is not None and journal.kind == "restore"
    assert journal.parameters["backup_file"] == str(manifest)
    assert "reflexio_url" not in journal.parameters and "api_key" not in str(journal)
    delete_journal(URL)


def _playbook_backup(tmp_path: Path) -> str:
    with BackupWriter(tmp_path / "pb", "user_playbooks", URL, "run-1") as writer:
        writer.write([{"user_playbook_id": 1, "user_id": "ann"}])
    return writer.info.manifest_path


def _other_server_backup(tmp_path: Path) -> str:
    with BackupWriter(tmp_path / "other", "profiles", "http://10.0.0.7:8081", "run-1") as w:
        w.write(before_rows())
    return w.info.manifest_path


def _bad_touched_file(tmp_path: Path) -> str:
    manifest, _ = regenerate(tmp_path)
    path = Path(manifest)
    with gzip.open(path.with_name(touched_name(path.name)), "wt") as out:
        out.write("[]")
    return manifest


def _bad_erasure_record(tmp_path: Path) -> str:
    manifest, _ = regenerate(tmp_path)
    (tmp_path / erasure_name(SERVER)).write_text('{"user_id": "cat", "erased_at": "yesterday"}\n')
    return manifest


def _damaged_data(tmp_path: Path) -> str:
    manifest, _ = regenerate(tmp_path)
    data = Path(manifest.replace(".manifest.json", ".jsonl.gz"))
    data.write_bytes(data.read_bytes()[:-8] + b"\0" * 8)
    return manifest


@pytest.mark.parametrize(
    ("make", "wrong", "todo"),
    [
        (lambda p: p / "missing.manifest.json", "does not exist", ""),
        (_playbook_backup, "holds user_playbooks, not profiles", "playbook flow's way back"),
        (_other_server_backup, "backup of 10.0.0.7:8081, not of 127.0.0.1:8081", "allow_other"),
        (_bad_touched_file, "is not a touched-ids file", "move it away"),
        (_bad_erasure_record, "line 1, is not an erasure record", "Fix or remove that line"),
        (_damaged_data, "", "use another backup"),
    ],
    ids=["missing", "playbooks", "other-server", "touched", "erasures", "damaged"],
)
def test_bad_input_fails_with_what_to_do_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: list[str], make, wrong, todo
):
    backup_file = make(tmp_path)
    server = MemoryServer(before_rows())
    serve(monkeypatch, server)

    state = run(backup_file=backup_file, records_dir=tmp_path, assume_no_erasures=True)

    assert state.is_failed()
    assert state.message.startswith("Restore failed: ")
    assert wrong in state.message and todo in state.message
    assert state.message.endswith("Nothing was written.")
    assert server.writes == [] and server.state() == {
        r["profile_id"]: r["status"] for r in before_rows()
    }
    assert "Nothing was written." in published[-1]


def _no_touched_file(tmp_path: Path) -> str:
    manifest, _ = regenerate(tmp_path)
    path = Path(manifest)
    path.with_name(touched_name(path.name)).unlink()
    record_erasures(tmp_path, SERVER, ["zed"], datetime.now(UTC))
    return manifest


def _no_erasure_record(tmp_path: Path) -> str:
    manifest, _ = regenerate(tmp_path)
    assert not (tmp_path / erasure_name(SERVER)).exists()
    return manifest


@pytest.mark.parametrize(
    ("make", "wrong", "accept"),
    [
        (_no_touched_file, "No touched-ids file beside", "recreate_missing=true"),
        (_no_erasure_record, "No erasure record", "assume_no_erasures=true"),
    ],
    ids=["no-touched-file", "no-erasure-record"],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_restore_that_could_resurrect_is_refused_until_the_risk_is_accepted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    published: list[str],
    make,
    wrong: str,
    accept: str,
    dry_run: bool,
):
    backup_file = make(tmp_path)
    _, server = regenerate(tmp_path / "server-after")  # the server as the run left it
    before = server.state()
    serve(monkeypatch, server)

    state = run(backup_file=backup_file, records_dir=tmp_path, dry_run=dry_run)

    assert state.is_failed()
    assert state.message.startswith(f"Restore failed: {wrong}"), state.message
    assert accept in state.message and state.message.endswith("Nothing was written.")
    assert server.writes == [] and server.state() == before

    name = accept.removesuffix("=true")
    accepted = run(backup_file=backup_file, records_dir=tmp_path, **{name: True})
    assert accepted.is_completed(), accepted.message
    expected = {r["profile_id"]: r["status"] for r in before_rows()}
    assert server.state() == {
        **expected,
        **({"p-ann": None, "p-ben": None, "p-cat": None} if name == "recreate_missing" else {}),
    }
    assert f"{name}=True" in published[-1]


def test_a_restore_that_deletes_more_than_a_request_takes_deletes_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: list[str]
):
    manifest, server = regenerate(tmp_path)
    record_erasures(tmp_path, SERVER, ["zed"], datetime.now(UTC))
    newer = {f"late-{n:05}": profile(f"late-{n:05}", "ann", f"fact {n}") for n in range(12_001)}
    server.rows.update(newer)
    serve(monkeypatch, server)

    state = run(backup_file=manifest, records_dir=tmp_path, delete_newer=True)

    assert state.is_completed(), state.message
    assert server.state() == {r["profile_id"]: r["status"] for r in before_rows()}
    deletes = [w for w in server.writes if w.startswith("delete")]
    full, rest = divmod(12_001, DELETE_BATCH)
    assert deletes == ["delete 3"] + [f"delete {DELETE_BATCH}"] * full + [f"delete {rest}"]


def test_rows_gone_since_the_backup_stay_gone_and_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: list[str]
):
    manifest, server = regenerate(tmp_path)
    record_erasures(tmp_path, SERVER, ["zed"], datetime.now(UTC))
    del server.rows["c-ann-0"]  # ann deleted a row the run archived
    for pid in [p for p, r in server.rows.items() if r["user_id"] == "ben"]:
        del server.rows[pid]  # ben was erased through the API: no erasure record
    serve(monkeypatch, server)

    state = run(backup_file=manifest, records_dir=tmp_path)

    assert state.is_completed(), state.message
    assert "gone since the backup, not re-created: 4" in state.message
    expected = {r["profile_id"]: r["status"] for r in before_rows()}
    gone = {"c-ann-0", "c-ben-0", "c-ben-1", "a-ben"}
    assert server.state() == {p: s for p, s in expected.items() if p not in gone}
    assert "ben" in published[-1] and "c-ann-0" in published[-1]


def test_a_restore_that_loses_the_lock_stops_before_its_next_write_and_keeps_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: list[str]
):
    """The lease is lost while the rows are re-created: no delete is sent, the journal
    stays for the next writer (who runs the restore again), and the run says so."""
    manifest, server = regenerate(tmp_path)
    serve(monkeypatch, server)

    def ensure_still_held(url: str) -> None:
        if server.writes:
            raise LockLost("Stopped before a write: the server lock was lost.")

    monkeypatch.setattr(restore_module, "ensure_still_held", ensure_still_held)

    state = run(backup_file=manifest, records_dir=tmp_path, assume_no_erasures=True)

    assert state.is_failed()
    assert state.message == "Restore stopped: Stopped before a write: the server lock was lost."
    assert server.writes == ["add 9"], "the re-creation ran; no delete after the lock was lost"
    journal = load_journal(URL)
    assert journal is not None and journal.kind == "restore"
    delete_journal(URL)
