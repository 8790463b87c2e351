"""Transport and server faults injected between the profile flow and the real server.

Each run either completes with the new generation verified, or fails cleanly before the
upgrade; the upgrade reaches the server at most once (counted by the proxy), and after the
run nothing is PENDING and CURRENT is either the pre-run rows or the new generation.
Several fault classes share one run (each on a different call) to keep the suite short;
every injected fault is asserted to have fired.
"""

from __future__ import annotations

import pytest

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
    record_faults,
    rows,
)

pytestmark = pytest.mark.reliability

READ_TIMEOUT_S = 4.0
"""The client's read timeout in these tests; 'timeout' faults hold longer than this."""


@pytest.fixture(autouse=True)
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_READ_TIMEOUT_S", str(READ_TIMEOUT_S))


def _run(proxy: FaultProxy, tmp_path, **extra):
    params = dict(reflexio_url=proxy.url, backup_dir=tmp_path, notification_block="none", **extra)
    return profile_regeneration(**params, return_state=True)


def _fired(proxy: FaultProxy) -> list[str]:
    return sorted(
        f"{r.fault} {r.method} {r.path.split('?')[0].rsplit('/', 1)[-1]}" for r in proxy.faults()
    )


@pytest.mark.slow  # CI: retries of reads in tests/unit/tasks, faults on reads in the writer matrix
def test_faults_on_every_read_before_the_upgrade_are_retried(
    clean_stack, prefect_api, proxy, tmp_path
):
    """503 burst, 429 + Retry-After, reset, timeout, truncated body, slow answer, 502 burst
    while polling: all transient, all retried; the run completes and upgrades once."""
    before = Snapshot.take(clean_stack.url)
    proxy.add(fault="status", path="/stall_state", status=503, times=2)
    proxy.add(fault="status", path="get_operation_status", status=429, headers={"Retry-After": "1"})
    proxy.add(fault="reset", path="status_filter=pending")
    proxy.add(fault="timeout", path="get_profile_statistics", hold_s=READ_TIMEOUT_S + 2)
    proxy.add(fault="truncate", path="status_filter=current")
    proxy.add(fault="delay", path="rerun_profile_generation", delay_s=2)
    proxy.add(fault="status", path="get_operation_status", nth=3, times=3, status=502)
    state = _run(proxy, tmp_path)
    assert state.is_completed(), state.message
    assert len(proxy.faults()) == 10, _fired(proxy)
    assert proxy.count("POST", UPGRADE) == 1
    assert proxy.count("POST", "rerun_profile_generation") == 1
    assert assert_consistent(clean_stack.url, before) == "upgraded"
    _, backup = load_backup(tmp_path)
    assert len(backup["rows"]) == len(before.current) + len(before.archived)
    record_faults(proxy)


def test_faults_on_the_upgrade_itself_never_upgrade_twice(
    clean_stack, prefect_api, proxy, tmp_path
):
    """Reset (not applied), 502 (not applied), then a timeout after the server applied it:
    the task re-reads the state each time; one upgrade reaches the server."""
    before = Snapshot.take(clean_stack.url)
    proxy.add(fault="reset", path=UPGRADE, nth=1)
    proxy.add(fault="status", path=UPGRADE, nth=2, status=502)
    proxy.add(fault="timeout", path=UPGRADE, nth=3, forward=True, hold_s=READ_TIMEOUT_S + 2)
    state = _run(proxy, tmp_path)
    assert state.is_completed(), state.message
    assert [r.fault for r in proxy.calls("POST", UPGRADE)] == ["reset", "status", "timeout"]
    assert proxy.count("POST", UPGRADE) == 1
    assert assert_consistent(clean_stack.url, before) == "upgraded"
    record_faults(proxy)


def test_malformed_answer_after_the_upgrade_rolls_back(clean_stack, prefect_api, proxy, tmp_path):
    """The verification read answers wrong types: not retried, the upgrade is rolled back
    and the data equals the backup."""
    before = Snapshot.take(clean_stack.url)
    proxy.add(
        fault="body",
        path="get_profile_statistics",
        nth=5,  # 1-2: the backup read, 3-4: the candidate read, 5: verification
        transform=lambda body: {**body, "current_count": "many"},
    )
    state = _run(proxy, tmp_path)
    assert state.is_failed()
    assert "rolled back" in state.message and "current_count" in state.message, state.message
    assert "data equals the state before the upgrade" in state.message
    assert proxy.count("POST", UPGRADE) == 1
    assert assert_consistent(clean_stack.url, before) == "unchanged"
    _, backup = load_backup(tmp_path)
    assert_equals_backup(clean_stack.url, backup["rows"])
    record_faults(proxy)


@pytest.mark.slow  # CI runs the other ambiguous-upgrade answers
def test_an_upgrade_slower_than_the_read_timeout_is_waited_on_not_sent_again(
    clean_stack, prefect_api, proxy, tmp_path
):
    """The upgrade reaches the server only after the client's read timeout (held in the
    proxy, then applied): the answer is lost while the upgrade is still to run. The task
    reads the state until it settles, finds it applied, verifies: one upgrade, no resend."""
    before = Snapshot.take(clean_stack.url)
    proxy.add(fault="delay", path=UPGRADE, nth=1, delay_s=READ_TIMEOUT_S + 4)
    state = _run(proxy, tmp_path)
    assert state.is_completed(), state.message
    assert proxy.count("POST", UPGRADE) == 1
    assert [r.fault for r in proxy.calls("POST", UPGRADE)] == ["delay"]
    assert assert_consistent(clean_stack.url, before) == "upgraded"
    record_faults(proxy)


@pytest.mark.slow  # CI runs the rollback of the malformed-answer case above
def test_a_rollback_whose_recreate_fails_says_what_differs_and_restore_finishes_it(
    clean_stack, prefect_api, proxy, tmp_path
):
    """The verification read answers wrong types (rollback), and the server refuses every
    re-create: the old ARCHIVED rows the upgrade deleted (H1) cannot come back. The run
    names them and the command that finishes; that command (restore, defaults) does."""
    clean_stack.bulk_seed([ProfileSeed("archived", 30, users=3, id_prefix="old")])
    before = Snapshot.take(clean_stack.url)
    archived = len(rows(clean_stack.url, "archived"))  # what the upgrade deletes (H1)
    proxy.add(
        fault="body",
        path="get_profile_statistics",
        nth=5,  # 1-2: the backup read, 3-4: the candidate read, 5: verification
        transform=lambda body: {**body, "current_count": "many"},
    )
    proxy.add(fault="status", path="add_user_profile", status=400, times=1000)
    state = _run(proxy, tmp_path)
    assert state.is_failed() and "rolled back" in state.message, state.message
    assert "data DIFFERS from before the upgrade" in state.message
    differs = f"Still different: {archived} backed-up row(s) missing or with another status: "
    assert differs in state.message  # every row the upgrade deleted, named by id
    manifest, backup = load_backup(tmp_path)
    assert f"To finish: run restore-profiles with backup_file={manifest}" in state.message

    record_faults(proxy)
    proxy.clear()  # the server takes re-creates again
    restored = restore_profiles(
        reflexio_url=proxy.url,
        backup_file=manifest,
        records_dir=tmp_path,
        assume_no_erasures=True,  # nobody was erased here: no record,
        return_state=True,
    )
    assert restored.is_completed(), restored.message
    assert_equals_backup(clean_stack.url, backup["rows"])
    assert assert_consistent(clean_stack.url, before) == "unchanged"
