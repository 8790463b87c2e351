"""SIGKILL the profile flow at each step boundary, then recover as docs/reliability.md says.

The flow runs in a subprocess (tests/reliability/driver.py) through the fault proxy; a proxy
rule holds one request at the chosen boundary, the test waits until the proxy sees it, and
kills the process group. Crash points, in the order of the flow:

1. after the rerun (its PENDING rows exist; the candidate listing is held); the backup was
   written before the rerun;
2. after the gate (the upgrade request is held before the server sees it);
3. during the upgrade (the server applied it; its answer is held);
4. after the upgrade, before verification (the verification read is held);
5. mid-rollback: the verification read answers nonsense, the rollback downgrades, and its
   delete of the run's rows is held;
6. mid-restore: the restore that recovers from 5 has re-created and re-statused the
   backed-up rows, and its delete of the run's rows is held.

Points 1-4 run as one chain (each recovery leaves the consistent state the next crash
starts from), to keep the suite short; 5 and 6 are a second chain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows.params import RegenerationParams, RestoreParams
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy
from tests.reliability.helpers import (
    UPGRADE,
    Snapshot,
    assert_consistent,
    assert_equals_backup,
    load_backup,
    prefect_env,
    release_lock,
    rows,
)

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
HOLD_S = 300.0

CRASH_POINTS = {
    "after-rerun": {"path": "status_filter=pending", "nth": 2},
    "after-gate": {"path": UPGRADE, "method": "POST"},
    "during-upgrade": {"path": UPGRADE, "method": "POST", "after": True},
    # Each complete read is proven by the statistics read before and after it: the backup
    # read takes the 1st and 2nd, the candidate read the 3rd and 4th, verification the 5th.
    "after-upgrade-before-verify": {"path": "get_profile_statistics", "nth": 5},
}


ROLLBACK_DELETE = {"path": "delete_profiles_by_ids", "method": "DELETE"}
"""The rollback's (and the restore's) delete of the rows the run promoted."""
VERIFICATION_NONSENSE = {
    "fault": "body",
    "path": "get_profile_statistics",
    "nth": 5,  # 1-2: the backup read, 3-4: the candidate read, 5: verification
    "transform": lambda body: {**body, "current_count": "many"},
}


def _start(proxy: FaultProxy, backup_dir: Path, *driver: str, **extra) -> subprocess.Popen:
    params = {"reflexio_url": proxy.url, "backup_dir": str(backup_dir), **extra}
    if driver:  # e.g. ("restore",): its params are given whole in `extra`
        params = {"reflexio_url": proxy.url, **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.driver", *driver, json.dumps(params)],
        cwd=ROOT,
        env=prefect_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def crash_at(
    proxy: FaultProxy,
    point: str | dict,
    backup_dir: Path,
    *driver: str,
    before: tuple[dict, ...] = (),
    **extra,
) -> str:
    """Run the flow in a subprocess and SIGKILL it at `point` (a name in CRASH_POINTS, or
    the proxy rule itself), after the proxy rules `before`; return its output."""
    proxy.clear()
    for other in before:
        proxy.add(**other)
    where = CRASH_POINTS[point] if isinstance(point, str) else point
    rule = proxy.add(fault="delay", delay_s=HOLD_S, **where)
    process = _start(proxy, backup_dir, *driver, **extra)
    try:
        proxy.wait_for(
            lambda r: r.fault == "delay" and (r.forwarded or not rule.after) and not r.done,
            timeout_s=180,
        )
        if rule.after:  # the server has answered the upgrade: it applied
            proxy.wait_for(lambda r: r.fault == "delay" and r.upstream_status is not None, 30)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
    proxy.clear()  # and the held request is released to nobody
    assert "FINAL" not in output, output
    return output


RESTORE = {"assume_no_erasures": True}
"""The documented recovery is a default restore (no delete_newer: rows users taught since
stay): the run wrote its touched-ids file before its upgrade, so the restore undoes exactly
what the run did. Nobody is erased in these tests, and they keep no erasure record."""


def _restore(proxy: FaultProxy, backup_file: Path):
    """The documented recovery: restore-profiles from the killed run's backup."""
    return restore_profiles(
        RestoreParams(backup_file=backup_file, reflexio_url=proxy.url, **RESTORE),
        return_state=True,
    )


def test_sigkill_at_each_step_boundary_then_recover(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    url = clean_stack.url
    lock_busy_s = 2

    # 1. after the rerun: PENDING rows exist, CURRENT untouched, the backup is finished.
    before = Snapshot.take(url)
    crash_at(proxy, "after-rerun", tmp_path / "1")
    assert rows(url, "pending"), "the rerun's PENDING rows should be there"
    assert {r["profile_id"] for r in rows(url, "current")} == before.ids
    _, backup = load_backup(tmp_path / "1")
    assert len(backup["rows"]) == len(before.current) + len(before.archived)
    # The killed run still holds the server's lock (its lease lasts 60 s).
    busy = profile_regeneration(
        RegenerationParams(reflexio_url=proxy.url, lock_timeout_s=lock_busy_s),
        return_state=True,
    )
    assert busy.is_failed() and "holds its lock" in busy.message, busy.message
    release_lock(proxy.url)
    # Recovery (documented): run again with discard_stale_pending=True. Here that run is
    # itself killed at the next boundary, which shows it got past the stale rows.

    # 2. after the gate: the upgrade never reached the server.
    crash_at(proxy, "after-gate", tmp_path / "2", discard_stale_pending=True)
    assert proxy.count("POST", UPGRADE) == 0
    assert {r["profile_id"] for r in rows(url, "current")} == before.ids
    _, backup = load_backup(tmp_path / "2")
    assert len(backup["rows"]) == len(before.current) + len(before.archived)
    release_lock(proxy.url)
    state = profile_regeneration(
        RegenerationParams(
            reflexio_url=proxy.url, backup_dir=tmp_path / "2b", discard_stale_pending=True
        ),
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert assert_consistent(url, before) == "upgraded"

    # 3. during the upgrade: applied on the server, the answer never arrived.
    before = Snapshot.take(url)
    crash_at(proxy, "during-upgrade", tmp_path / "3")
    assert assert_consistent(url, before) == "upgraded"  # whole, never half
    backup_file, backup = load_backup(tmp_path / "3")
    assert len(backup["rows"]) == len(before.current) + len(before.archived)
    release_lock(proxy.url)
    restored = _restore(proxy, backup_file)  # recovery: restore-profiles from the backup
    assert restored.is_completed(), restored.message
    assert_equals_backup(url, backup["rows"])
    assert assert_consistent(url, before) == "unchanged"

    # 4. after the upgrade, before verification.
    crash_at(proxy, "after-upgrade-before-verify", tmp_path / "4")
    assert assert_consistent(url, before) == "upgraded"
    backup_file, backup = load_backup(tmp_path / "4")
    assert len(backup["rows"]) == len(before.current) + len(before.archived)
    release_lock(proxy.url)
    restored = _restore(proxy, backup_file)
    assert restored.is_completed(), restored.message
    assert_equals_backup(url, backup["rows"])
    assert assert_consistent(url, before) == "unchanged"
    measured["crash points recovered"] += 4


def test_sigkill_mid_rollback_then_mid_restore_then_recover(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    url = clean_stack.url
    # Old ARCHIVED rows, which the upgrade deletes (H1): the restore must re-create them.
    clean_stack.bulk_seed([ProfileSeed("archived", 30, users=3, id_prefix="crash-old")])
    before = Snapshot.take(url)

    # 5. mid-rollback: the verification read fails, the rollback starts and is killed.
    crash_at(proxy, ROLLBACK_DELETE, tmp_path, before=(VERIFICATION_NONSENSE,))
    # The rollback had downgraded (the server swaps: the pre-run CURRENT rows are CURRENT
    # again, the promoted ones ARCHIVED) but not yet deleted the run's rows nor re-created
    # the old ARCHIVED rows the upgrade deleted (H1).
    old_archived = {r["profile_id"] for r in before.archived}
    assert {r["profile_id"] for r in rows(url, "current")} == before.ids
    promoted = {r["profile_id"] for r in rows(url, "archived")}
    assert promoted and not promoted & (before.ids | old_archived)
    backup_file, backup = load_backup(tmp_path)
    release_lock(proxy.url)

    # 6. mid-restore: the documented recovery (restore-profiles from the run's backup) is
    # itself killed after its re-creates, before it deletes the run's rows.
    crash_at(proxy, ROLLBACK_DELETE, tmp_path, "restore", backup_file=str(backup_file), **RESTORE)
    # It had re-created the old ARCHIVED rows, and not yet deleted the run's rows.
    archived = {r["profile_id"] for r in rows(url, "archived")}
    assert old_archived <= archived and promoted <= archived
    release_lock(proxy.url)

    # Recovery of both: the same restore again (it is idempotent).
    restored = _restore(proxy, backup_file)
    assert restored.is_completed(), restored.message
    assert_equals_backup(url, backup["rows"])
    assert assert_consistent(url, before) == "unchanged"
    measured["crash points recovered"] += 2
