"""SIGKILL a restore and a clear-user-data run half-way, then the next writer repairs.

Both write the run journal (core/journal.py, kind "restore" / "clear_users") before their
first write and remove it once they have checked their work; the next writer on the server,
whichever it is, runs the dead one again from it right after taking the lock
(flows/run_repair.py) and says "Repaired an unfinished ...". The flows run in a subprocess
(tests/reliability/driver.py) through the fault proxy, which holds one request while the
test kills the process group (test_crash.crash_after). Crash points:

restore (one chain, each run killed part-way; the last repaired by a restore dry run):
1. mid re-creation: the second page of re-created rows held (the first is on the server);
2. mid deletes: the same restore again, whose repair re-creates the rest and deletes the
   first batch of the run's promoted rows; the second batch held;
clear-user-data:
3. after one user of three is erased: the second user's erase held; repaired by a restore
   dry run;
4. after the erase, before the listing that checks it: repaired by a sweep;
the sweep:
5. after its first source, the second source's manual generation held: repaired by a
   clear-user-data run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.backup import BackupWriter
from core.erasures import read_erasures
from core.identity import server_key
from core.state import ExpectedState
from core.touched import write_touched_ids
from flows.clear_users import clear_users
from flows.sweep import manual_sweep
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.journal import load_journal
from tasks.server import DELETE_BATCH, RECREATE_BATCH
from tests.integration.pipeline_helpers import profile_rows, rows_by_id
from tests.reliability.helpers import CHECKED_BY_ID, everyones_rows, restore_dry_run
from tests.reliability.test_crash import REPAIRED, answered, crash_after
from tests.tally import claim

pytestmark = pytest.mark.reliability

RUN_ID = "00000000-killed-restore"
OLD = ProfileSeed("archived", RECREATE_BATCH + 50, users=40, id_prefix="killed")
"""Old ARCHIVED rows the backed-up run's upgrade deleted (H1): two pages to re-create."""
PROMOTED = ProfileSeed("current", DELETE_BATCH + 100, users=40, id_prefix="killed")
"""Rows the backed-up run promoted (its users are OLD's): two delete batches, and more than
one listing page."""
RECREATE = {"path": "add_user_profile", "method": "POST", "nth": 2}
DELETE = {"path": "delete_profiles_by_ids", "method": "DELETE", "nth": 2}
ERASE = {"path": "clear_user_data", "method": "POST", "nth": 2}


def _backup(directory: Path, url: str, rows: list[dict], touched: ExpectedState) -> str:
    """A backup of `rows` as a regeneration writes it, with its touched-ids file."""
    with BackupWriter(directory, "profiles", url, RUN_ID) as writer:
        writer.write(rows)
    write_touched_ids(writer.info.manifest_path, touched)
    return writer.info.manifest_path


def _journal_kind(url: str) -> str | None:
    journal = load_journal(url)
    return None if journal is None else journal.kind


def test_sigkill_mid_restore_then_the_next_writer_finishes_it(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path
):
    """The backed-up run is made by hand to keep the test short: OLD and PROMOTED
    bulk-seeded, a backup of every row but PROMOTED, then OLD deleted as its upgrade would
    have (H1). A complete restore leaves exactly the backed-up rows, by id."""
    url = clean_stack.url
    clean_stack.bulk_seed([OLD, PROMOTED])
    old, promoted = set(OLD.ids()), set(PROMOTED.ids())
    before = {pid: row for pid, row in rows_by_id(url).items() if pid not in promoted}
    backed = [r for r in profile_rows(url, "current", "archived") if r["profile_id"] in before]
    touched = ExpectedState(
        promoted=frozenset(promoted),
        current=frozenset(promoted),
        archived=frozenset(),
        deleted=frozenset(old),
    )
    manifest = _backup(tmp_path / "run", proxy.url, backed, touched)
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        client.delete_profiles(sorted(old))
    restore = {"backup_file": manifest, "records_dir": str(tmp_path), "assume_no_erasures": True}

    # 1. Killed with its second page of re-created rows held.
    crash_after(proxy, (None, RECREATE), tmp_path, "restore", **restore)
    now = rows_by_id(url).keys()
    assert 0 < len(old & now) < len(old), "the first page re-created, not the second"
    assert promoted <= now
    assert _journal_kind(proxy.url) == "restore"

    # 2. The same restore again: its repair runs the dead one again, which re-creates the
    # rest and deletes the first batch of promoted rows; killed with the second batch held.
    output = crash_after(proxy, (None, DELETE), tmp_path, "restore", **restore)
    assert "Found the journal of an unfinished restore-profiles" in output, output
    now = rows_by_id(url).keys()
    assert old <= now
    assert 0 < len(promoted & now) < len(promoted), "the first delete batch done, not the second"
    assert _journal_kind(proxy.url) == "restore"

    # The next writer (the restore, dry) finishes it first, and then finds nothing to do.
    state = restore_dry_run(proxy.url, **restore)
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} restore-profiles"), state.message
    assert "ran it again: Restored from" in state.message and "checked by id" in state.message
    assert "Dry run, nothing written; would re-create 0, re-status 0, delete 0" in state.message
    assert rows_by_id(url) == before, "exactly the backed-up rows, by id, status and content"
    assert load_journal(proxy.url) is None
    claim("crash points recovered", 2)
    claim(CHECKED_BY_ID)
    with ReflexioClient(ReflexioSettings(url=url)) as client:  # as the seed had it
        client.delete_profiles(sorted(old))


def _playbooks(url: str) -> dict[int, tuple[str | None, str]]:
    """Every live user playbook: id -> (user, content)."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return {p.user_playbook_id: (p.user_id, p.content) for p in client.list_user_playbooks()}


def _profiles(url: str) -> dict[str, tuple[str | None, str]]:
    """Every profile, every status: id -> (user, content)."""
    return {pid: (user, content) for pid, (_, user, content) in rows_by_id(url).items()}


def _of(rows: dict, users: set[str], keep: bool = True) -> dict:
    """The rows of these users (keep=False: of everyone else)."""
    return {i: row for i, row in rows.items() if (row[0] in users) == keep}


def test_sigkill_mid_clear_user_data_then_the_next_writer_erases_the_rest(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path
):
    url = clean_stack.url
    profiles, playbooks = _profiles(url), _playbooks(url)
    users = sorted({u for u, _ in profiles.values() if u})
    erase = set(users[:3])
    first, *rest = sorted(erase)
    assert len(users) > len(erase) and all(_of(profiles, {u}) for u in erase)
    backed = profile_rows(url, "current", "archived")
    with BackupWriter(tmp_path / "before", "profiles", proxy.url, RUN_ID) as writer:
        writer.write(backed)
    records = tmp_path / "records"

    # 3. Killed with the second user's erase held: the first is erased, the others not yet.
    params = {"user_ids": sorted(erase), "records_dir": str(records)}
    crash_after(proxy, (None, ERASE), tmp_path, "clear-users", **params)
    assert set(read_erasures(records, server_key(proxy.url))) == erase, "recorded before"
    assert not _of(_profiles(url), {first})
    for user in rest:
        assert _of(_profiles(url), {user}) == _of(profiles, {user})
    assert _journal_kind(proxy.url) == "clear_users"

    # The next writer (a restore dry run of a backup taken before) erases the rest first.
    state = restore_dry_run(
        proxy.url,
        backup_file=writer.info.manifest_path,
        records_dir=records,
        recreate_missing=True,
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} clear-user-data"), state.message
    assert "ran it again: Cleared 3 user(s); nothing of theirs remains" in state.message
    assert f"of {len(erase)} user(s) erased since the backup not restored" in state.message
    after_profiles, after_playbooks = _profiles(url), _playbooks(url)
    assert not _of(after_profiles, erase) and not _of(after_playbooks, erase)
    assert _of(after_profiles, erase, keep=False) == _of(profiles, erase, keep=False)
    assert _of(after_playbooks, erase, keep=False) == _of(playbooks, erase, keep=False)
    assert load_journal(proxy.url) is None
    claim("crash points recovered")
    claim(CHECKED_BY_ID)


def test_sigkill_after_clear_user_data_erased_before_its_check_then_the_next_writer_checks(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path
):
    """4. The one user's erase answered, the run killed on its next read (the listing that
    proves nothing of theirs remains): the next writer, a sweep, runs the clear again
    first; nothing of the user remains and every other user's rows are as before by id."""
    url = clean_stack.url
    before = everyones_rows(url)
    user = sorted({u for u, _ in _profiles(url).values() if u})[-1]
    assert any(row[0] == user for row in before.values())
    params = {"user_ids": [user], "records_dir": str(tmp_path / "records")}
    after_erase = (answered("clear_user_data"), {"path": "/api/get_"})
    crash_after(proxy, after_erase, tmp_path, "clear-users", **params)
    assert _journal_kind(proxy.url) == "clear_users"

    state = manual_sweep(
        reflexio_url=proxy.url,
        sources=["chat"],
        kinds=["profiles"],
        manual_calls_per_minute=120,
        return_state=True,
    )
    assert state.message.startswith(f"{REPAIRED} clear-user-data"), state.message
    after = everyones_rows(url)
    assert [i for i, row in after.items() if row[0] == user] == []
    others = {i: row for i, row in before.items() if row[0] != user}
    assert others.items() <= after.items(), "another user's row lost or changed"
    assert load_journal(proxy.url) is None
    claim("crash points recovered")
    claim(CHECKED_BY_ID)


def test_sigkill_mid_sweep_then_the_next_writer_runs_only_the_steps_not_done(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path
):
    """5. A sweep of chat then email, killed with its second manual generation held before
    the server saw it: the next writer (a clear-user-data run of nobody) runs the email step
    only, then its own work; every CURRENT profile of before is still there by id."""
    url = clean_stack.url
    before = everyones_rows(url)
    params = {"sources": ["chat", "email"], "kinds": ["profiles"], "manual_calls_per_minute": 120}
    second = (None, {"path": "manual_profile_generation", "method": "POST", "nth": 2})
    crash_after(proxy, second, tmp_path, "sweep", **params)
    assert _journal_kind(proxy.url) == "sweep"

    state = clear_users(
        reflexio_url=proxy.url,
        user_ids=["nobody-has-this-id"],
        records_dir=str(tmp_path / "records"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} manual-generation-sweep"), state.message
    assert proxy.count("POST", "manual_profile_generation") == 1, "only the step not done"
    after = everyones_rows(url)
    assert before.keys() <= after.keys(), "a row of before is gone"
    assert load_journal(proxy.url) is None
    claim("crash points recovered")
    claim(CHECKED_BY_ID)
