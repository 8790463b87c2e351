"""SIGKILL the regenerations at each journal step, then the next writer repairs.

The flow runs in a subprocess (tests/reliability/driver.py) through the fault proxy; a proxy
rule holds one request at the chosen point, the test waits until the proxy sees it, and
kills the process group. The run journal (core/journal.py) the killed run left is found by
the next writer right after it takes the server's lock, and finished or undone from the
server's rows (flows/run_repair.py). Crash points:

profiles, one chain (each repaired by the run killed at the next point; the last by a run
that completes):
1. after the rerun (journal step "candidate"; the candidate listing is held): repaired by
   deleting the candidate, no discard_stale_pending needed;
2. after the gate (journal step "upgrade"; the upgrade request is held before the server
   sees it): repaired as "not applied", no downgrade;
3. during the upgrade (the server applied it; its answer is held): kept, checked by id;
4. after the upgrade, before verification (the verification read is held): kept;
5. mid-rollback: the verification read answers nonsense, the rollback downgrades, and its
   delete of the run's rows is held: repaired by id to the state before the upgrade;
playbooks:
6. after the rerun (the H6 window: the rerun tombstoned CURRENT playbooks; the candidate
   listing is held): every tombstoned playbook CURRENT again, the rows the rerun left keep
   their ids, profiles and v2's playbooks as before by id;
7. during the upgrade (the server applied it; its answer is held): kept, checked by id
   against the killed run's touched-ids file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.kinds import user_playbooks
from core.touched import read_touched_ids, touched_name
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy, Record
from tests.integration.pipeline_helpers import rows_by_id, run_backup
from tests.reliability.helpers import (
    CHECKED_BY_ID,
    UPGRADE,
    Snapshot,
    assert_consistent,
    kind_rows,
    prefect_env,
    release_lock,
    rows,
)

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
HOLD_S = 300.0
REPAIRED = "Repaired an unfinished"

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
    if driver in (("restore",), ("clear-users",), ("sweep",)):  # params given whole in `extra`
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


Trigger = Callable[[Record], bool]


def answered(path: str) -> Trigger:
    """The server answered a request to `path`."""
    return lambda r: path in r.path and r.upstream_status is not None


def sent_to(path: str) -> Trigger:
    """A request to `path` reached the proxy."""
    return lambda r: path in r.path


AFTER_RERUN = (sent_to("rerun_profile_generation"), {"path": "status_filter=pending"})
AFTER_GATE = (None, {"path": UPGRADE, "method": "POST"})
DURING_UPGRADE = (None, {"path": UPGRADE, "method": "POST", "after": True})
BEFORE_VERIFY = (answered(UPGRADE), {"path": "/api/get_", "method": "GET"})
SLOW_UPGRADE_ANSWER = {"fault": "delay", "path": UPGRADE, "after": True, "delay_s": 3.0}
"""The upgrade's answer reaches the run 3 s after the server gave it: time for the test to
add the rule that holds the run's next request."""
TOMBSTONE_WAIT_S = 30

PLAYBOOKS_AFTER_RERUN = (
    sent_to("rerun_playbook_generation"),
    {"path": "get_user_playbooks", "method": "POST"},
)


def crash_after(
    proxy: FaultProxy,
    point: tuple[Trigger | None, dict],
    backup_dir: Path,
    *driver: str,
    before: tuple[dict, ...] = (),
    sig: signal.Signals = signal.SIGKILL,
    **extra,
) -> str:
    """Run the flow in a subprocess and kill it (`sig`) when the proxy holds the request of
    `point`'s rule, which is added once `point`'s trigger has been seen (at once without
    one), after the rules `before`; return the killed run's output (its log). SIGTERM is
    what a process worker sends when a run is cancelled from the UI or the API."""
    trigger, where = point
    proxy.clear()
    for other in before:
        proxy.add(**other)
    rule = proxy.add(fault="delay", delay_s=HOLD_S, **where) if trigger is None else None
    process = _start(proxy, backup_dir, *driver, **extra)
    timed_out: TimeoutError | None = None
    try:
        if trigger is not None:
            proxy.wait_for(trigger, timeout_s=300)
            rule = proxy.add(fault="delay", delay_s=HOLD_S, **where)
        assert rule is not None
        proxy.wait_for(
            lambda r: r.fault == "delay" and (r.forwarded or not rule.after) and not r.done,
            timeout_s=300,
        )
        if rule.after:  # the server has answered the upgrade: it applied
            proxy.wait_for(lambda r: r.fault == "delay" and r.upstream_status is not None, 30)
    except TimeoutError as exc:
        timed_out = exc
    finally:
        os.killpg(process.pid, sig)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=30)
    if timed_out is not None:
        calls = [f"{r.method} {r.path} {r.status}" for r in proxy.records][-15:]
        raise AssertionError(f"{timed_out}; last calls {calls}; the run said:\n{output}")
    proxy.clear()
    assert "FINAL Completed" not in output and "FINAL COMPLETED" not in output, output
    release_lock(proxy.url)  # the killed run's lease would hold it for 60 s more
    return output


def test_sigkill_at_each_journal_step_then_the_next_writer_repairs(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    url = clean_stack.url
    seeded = Snapshot.take(url)

    # 1. after the rerun: PENDING rows exist, CURRENT untouched.
    crash_after(proxy, AFTER_RERUN, tmp_path / "1")
    assert rows(url, "pending"), "the rerun's PENDING rows should be there"
    assert {r["profile_id"] for r in rows(url, "current")} == seeded.ids

    # 2. the next run repairs 1 (its candidate deleted; no discard_stale_pending), reruns,
    # and is killed with its upgrade held before the server sees it.
    output = crash_after(proxy, AFTER_GATE, tmp_path / "2")
    assert f"{REPAIRED} profile regeneration" in output and "step candidate" in output, output
    assert "PENDING profiles this run created" in output
    assert proxy.count("POST", UPGRADE) == 0
    assert {r["profile_id"] for r in rows(url, "current")} == seeded.ids

    # 3. the next run repairs 2 (not applied: nothing changed back, no downgrade), and is
    # cancelled (SIGTERM, as a process worker does) after the server applied its upgrade.
    output = crash_after(proxy, DURING_UPGRADE, tmp_path / "3", sig=signal.SIGTERM)
    assert "Upgrade not applied" in output and "no downgrade ran" in output, output
    assert assert_consistent(url, seeded) == "upgraded"  # whole, never half
    upgraded = Snapshot.take(url)

    # 4. the next run keeps 3's upgrade (applied in full, checked by id), and is killed
    # after its own upgrade, before it verified.
    output = crash_after(proxy, BEFORE_VERIFY, tmp_path / "4", before=(SLOW_UPGRADE_ANSWER,))
    assert "had applied in full" in output and "kept" in output, output
    assert proxy.count("POST", "downgrade") == 0
    assert assert_consistent(url, upgraded) == "upgraded"
    upgraded = Snapshot.take(url)

    # The next run keeps 4's upgrade too, then does its own, verified.
    state = profile_regeneration(
        reflexio_url=proxy.url, backup_dir=tmp_path / "5", return_state=True
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} profile regeneration"), state.message
    assert "had applied in full" in state.message
    assert assert_consistent(url, upgraded) == "upgraded"
    measured["crash points recovered"] += 4


def test_sigkill_mid_rollback_then_the_next_writer_repairs(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    url = clean_stack.url
    # Old ARCHIVED rows, which the upgrade deletes (H1): the repair must re-create them.
    clean_stack.bulk_seed([ProfileSeed("archived", 30, users=3, id_prefix="crash-old")])
    before = Snapshot.take(url)

    # 5. mid-rollback: the verification read fails, the rollback downgrades, and its
    # delete of the run's rows is held.
    nonsense = {
        "fault": "body",
        "path": "get_profile_statistics",
        "transform": lambda body: {**body, "current_count": "many"},
    }
    point = (answered(UPGRADE), {"path": "delete_profiles_by_ids", "method": "DELETE"})
    trigger, hold = point
    proxy.clear()
    proxy.add(**SLOW_UPGRADE_ANSWER)
    process = _start(proxy, tmp_path / "killed")
    try:
        proxy.wait_for(trigger, timeout_s=180)
        proxy.add(**nonsense)
        rule = proxy.add(fault="delay", delay_s=HOLD_S, **hold)
        proxy.wait_for(lambda r: r.fault == "delay" and r.path.find(UPGRADE) < 0, timeout_s=180)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
    assert rule.fired and "FINAL" not in output, output
    proxy.clear()
    release_lock(proxy.url)
    # The rollback had downgraded (the pre-run CURRENT rows CURRENT again, the promoted ones
    # ARCHIVED) but not yet deleted the run's rows nor re-created the old ARCHIVED rows.
    old_archived = {r["profile_id"] for r in before.archived}
    assert {r["profile_id"] for r in rows(url, "current")} == before.ids
    assert not old_archived & {r["profile_id"] for r in rows(url, "archived")}

    # The next writer repairs by id from the journal, then does its own run (dry: the
    # state it leaves is the repaired one).
    state = profile_regeneration(
        reflexio_url=proxy.url,
        backup_dir=tmp_path / "next",
        dry_run=True,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} profile regeneration"), state.message
    assert "data equals the state before the upgrade" in state.message
    assert proxy.count("POST", "downgrade") == 0  # the repair did not downgrade again
    assert assert_consistent(url, before) == "unchanged"
    assert {r["profile_id"] for r in rows(url, "archived")} == old_archived
    measured["crash points recovered"] += 1


def test_sigkill_after_a_playbook_rerun_then_the_next_writer_puts_tombstones_back(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    """The H6 window: the rerun tombstoned the CURRENT playbooks it re-derived; the run is
    killed before it gates. The next writer (here a profile dry run) puts them back."""
    url = clean_stack.url
    kind = user_playbooks("v1")
    before_rows = kind_rows(url, kind)["current"]
    current = {(r["user_id"], r["content"]) for r in before_rows}
    assert current, "the seed has CURRENT v1 playbooks"
    untouched = _untouched(url)

    crash_after(proxy, PLAYBOOKS_AFTER_RERUN, tmp_path / "killed", "playbooks")

    def current_now() -> set[tuple[str, str]]:
        return {(r["user_id"], r["content"]) for r in kind_rows(url, kind)["current"]}

    # The server can mark the old rows merged a moment after the rerun says completed (seen
    # once in CI under load): wait for the tombstones before going on, up to 30 s.
    deadline = time.monotonic() + TOMBSTONE_WAIT_S
    while current_now() == current and time.monotonic() < deadline:
        time.sleep(1)
    tombstoned = current_now() != current
    kept = {r["user_playbook_id"] for r in kind_rows(url, kind)["current"]} & {
        r["user_playbook_id"] for r in before_rows
    }

    state = profile_regeneration(
        reflexio_url=proxy.url,
        backup_dir=tmp_path / "next",
        dry_run=True,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} v1 playbook regeneration"), state.message
    now = {(r["user_id"], r["content"]) for r in kind_rows(url, kind)["current"]}
    assert now == current  # the tombstoned rows back as CURRENT (new ids: by content)
    now_ids = {r["user_playbook_id"] for r in kind_rows(url, kind)["current"]}
    assert kept <= now_ids, "a CURRENT row the rerun left alone lost its id"
    assert _untouched(url) == untouched, "profiles or v2's playbooks changed"
    if not tombstoned:  # the repair held, but the H6 window was not reached: not counted
        pytest.skip(
            "the playbook rerun tombstoned no CURRENT playbook this time (the server's "
            "consolidation merged nothing; seen in 2 of about 6 clean-clone CI runs, cause not "
            "found): the killed run was repaired, the H6 put-back was not exercised"
        )
    measured["crash points recovered"] += 1


def _untouched(url: str) -> tuple[dict, dict]:
    """What a v1 playbook run must not change: every profile and v2's playbooks, by id."""
    v2 = kind_rows(url, user_playbooks("v2"))
    by_id = {s: {r["user_playbook_id"]: r["content"] for r in v2[s]} for s in v2}
    return rows_by_id(url), by_id


def test_sigkill_during_a_playbook_upgrade_then_the_next_writer_keeps_it(
    seeded_stack, prefect_api, proxy, tmp_path, measured
):
    """The playbook upgrade applied, its answer held, the run killed: the next writer (a
    profile dry run) finds it applied in full and keeps it; checked by id against the
    touched-ids file the killed run wrote before sending the upgrade."""
    url = seeded_stack.url
    kind = user_playbooks("v1")
    untouched = _untouched(url)
    upgrade = {"path": "upgrade_all_user_playbooks", "method": "POST", "after": True}
    crash_after(proxy, (None, upgrade), tmp_path / "killed", "playbooks")

    state = profile_regeneration(
        reflexio_url=proxy.url, backup_dir=tmp_path / "next", dry_run=True, return_state=True
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} v1 playbook regeneration"), state.message
    assert "had applied in full" in state.message, state.message
    assert proxy.count("POST", "downgrade") == 0
    manifest = run_backup(tmp_path / "killed", "user_playbooks")
    ids_file = manifest.parent / touched_name(manifest.name)
    touched = {k: set(v) for k, v in read_touched_ids(ids_file).items()}
    after = kind_rows(url, kind)
    assert touched["promoted"], "the killed run promoted nothing"
    assert touched["promoted"] <= {kind.row_id(r) for r in after["current"]}
    assert touched["archived"] <= {kind.row_id(r) for r in after["archived"]}
    assert after["pending"] == []
    assert _untouched(url) == untouched, "profiles or v2's playbooks changed"
    measured["crash points recovered"] += 1
    measured[CHECKED_BY_ID] += 1
