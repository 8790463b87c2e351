"""A cancel through the Prefect API mid-upgrade, then the next writer repairs.

The regeneration runs as a deployment served by a real Prefect runner
(tests/reliability/served.py, `flow.serve`), which executes the run in a child process. The
fault proxy holds the upgrade's answer once the server has applied it; the test then sets
the run Cancelling through the API, as the UI's Cancel button does. The runner kills the
child (SIGTERM, then SIGKILL) and marks the run Cancelled; the run's journal stays, and the
next writer repairs from it by what the server shows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from local_stack.fault_proxy import FaultProxy
from tasks.journal import load_journal
from tests.integration.pipeline_helpers import run_backup
from tests.reliability.helpers import (
    UPGRADE,
    Snapshot,
    assert_consistent,
    prefect_env,
    release_lock,
    restore_dry_run,
)
from tests.reliability.test_crash import HOLD_S, REPAIRED, ROOT

pytestmark = pytest.mark.reliability

DEPLOYMENT = "cancel-mid-upgrade"


def _wait(what: str, check, timeout_s: float):
    """Poll `check` every half second until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc; zombies excluded)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _flow_run_processes(server_pid: int) -> set[int]:
    """The runner's children that run a flow (multiprocessing spawn children)."""
    out = set()
    for pid in _children(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out.add(pid)
    return out


def _deployment_ready() -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(f"profile-regeneration/{DEPLOYMENT}")
        except ObjectNotFound:
            return False
        return True


def _state(flow_run_id: UUID) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return None if state is None else state.type


def test_a_cancel_through_the_api_mid_upgrade_then_the_next_writer_repairs(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path, measured
):
    url = clean_stack.url
    seeded = Snapshot.take(url)
    env = {**prefect_env(), "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "served.log").open("w")
    served = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.served", DEPLOYMENT],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait("the served deployment", _deployment_ready, 120)
        proxy.add(fault="delay", delay_s=HOLD_S, path=UPGRADE, method="POST", after=True)
        params = {"reflexio_url": proxy.url, "backup_dir": str(tmp_path / "cancelled")}
        run = run_deployment(f"profile-regeneration/{DEPLOYMENT}", parameters=params, timeout=0)
        # The server applied the upgrade; its answer is held at the proxy.
        proxy.wait_for(lambda r: r.fault == "delay" and r.upstream_status is not None, 300)
        running = _flow_run_processes(served.pid)
        assert len(running) == 1, running
        assert _state(run.id) is StateType.RUNNING

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="cancelled by the test"))
        _wait("the run Cancelled", lambda: _state(run.id) is StateType.CANCELLED, 120)
        assert not _flow_run_processes(served.pid), "the run's process is still alive"
        assert served.poll() is None, "the runner itself went on serving"
    finally:
        os.killpg(served.pid, signal.SIGKILL)
        served.wait(timeout=30)
        log.close()
    proxy.clear()
    journal = load_journal(proxy.url)
    assert journal is not None and journal.step == "upgrade", journal
    assert journal.flow_run_id == str(run.id)
    release_lock(proxy.url)  # the killed run's lease would hold it for 60 s more

    # The next writer (a restore dry run of the cancelled run's backup: a cheap writer)
    # repairs first: the upgrade had applied in full, so it is kept, checked by id.
    state = restore_dry_run(
        proxy.url,
        backup_file=run_backup(tmp_path / "cancelled"),
        records_dir=tmp_path,
        assume_no_erasures=True,
    )
    assert state.is_completed(), state.message
    assert state.message.startswith(f"{REPAIRED} profile regeneration"), state.message
    assert f"flow run {run.id}, step upgrade" in state.message
    assert "had applied in full" in state.message and "kept" in state.message
    assert "Dry run, nothing written" in state.message
    assert proxy.count("POST", "downgrade") == 0
    assert assert_consistent(url, seeded) == "upgraded"
    assert load_journal(proxy.url) is None
    measured["crash points recovered"] += 1
