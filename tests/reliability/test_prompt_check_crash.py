"""SIGKILL `reflexio-pipelines prompt-check` at each step (as a cancelled CI job is), then
check that the next run on the server undoes it, whichever flow that is, and says so.

The check runs in a subprocess (tests/reliability/driver.py) through the fault proxy; a
proxy rule holds one request at the chosen step, the test waits until the proxy sees it and
kills the process group. Crash points, in the order of the check:

1. after apply: the candidate config is on the server; the profile rerun request is held;
2. during the rerun: the rerun runs on the server (a slow stand-in LLM) and goes on
   writing PENDING rows after the kill; a poll of its status is held;
3. after the gate (--promote): the candidate passed and is kept PENDING; the upgrade
   request is held before the server sees it;
4. during promote (--promote): the server upgraded the profiles (deleting old ARCHIVED
   rows, H1); its answer is held.

After each, the next run (clear-user-data, a restore dry run, the prompt check itself, a
profile regeneration dry run) must first put the server back as the check found it: the
original config byte for byte, none of the check's PENDING rows, every CURRENT and ARCHIVED
profile by id and content. The points run as one chain to keep the suite short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows.clear_users import clear_users
from flows.cli import main as cli_main
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from local_stack.fault_proxy import FaultProxy
from tasks.check_record import load_record
from tests.integration.pipeline_helpers import config_bytes
from tests.reliability.helpers import (
    UPGRADE,
    Snapshot,
    assert_consistent,
    load_backup,
    operation_running,
    prefect_env,
    release_lock,
    rows,
)

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
HOLD_S = 300.0
CANDIDATE = """\
profile_extractor_config:
  extraction_definition_prompt: Extract the user's stated preferences and constraints only.
  manual_trigger: false
"""
UNDID = "Undid an unfinished prompt check"

CRASH_POINTS = {
    "after-apply": {"path": "rerun_profile_generation", "method": "POST"},
    # The engine reads the status once before its rerun; the 3rd read is the 2nd poll.
    "during-rerun": {"path": "get_operation_status", "nth": 3},
    "after-gate": {"path": UPGRADE, "method": "POST"},
    "during-promote": {"path": UPGRADE, "method": "POST", "after": True},
}


def _check_args(proxy: FaultProxy, tmp_path: Path, name: str, *extra: str) -> list[str]:
    config = tmp_path / "candidate.yaml"
    config.write_text(CANDIDATE)
    return [
        "prompt-check",
        "--config",
        str(config),
        "--reflexio-url",
        proxy.url,
        "--backup-dir",
        str(tmp_path / name),
        "--report",
        str(tmp_path / f"{name}.md"),
        *extra,
    ]


def _crash_at(proxy: FaultProxy, point: str, args: list[str]) -> None:
    """Run the check in a subprocess and SIGKILL it at `point`."""
    proxy.clear()
    rule = proxy.add(fault="delay", delay_s=HOLD_S, **CRASH_POINTS[point])
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.driver", *args],
        cwd=ROOT,
        env=prefect_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
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
    proxy.clear()
    assert "FINAL" not in output, output
    release_lock(proxy.url)  # the dead run's lease would hold it for 60 s more


def _assert_undone(url: str, before: Snapshot, config: bytes, proxy_url: str) -> None:
    """The server as the check found it, and no record of the check left."""
    assert config_bytes(url) == config
    assert assert_consistent(url, before) == "unchanged"  # no PENDING; CURRENT by id
    assert {r["profile_id"] for r in rows(url, "archived")} == {
        r["profile_id"] for r in before.archived
    }
    assert load_record(proxy_url) is None


@pytest.mark.slow  # CI: the undo of a dead check in tests/unit/flows/test_check_repair.py
def test_a_killed_prompt_check_is_undone_by_the_next_run(
    clean_stack, prefect_api, proxy, tmp_path, measured
):
    url = clean_stack.url
    before, config = Snapshot.take(url), config_bytes(url)

    # 1. after apply -> clear-user-data (of a user who does not exist) undoes it first.
    _crash_at(proxy, "after-apply", _check_args(proxy, tmp_path, "1"))
    assert config_bytes(url) != config, "the candidate should be on the server"
    assert load_record(proxy.url) is not None
    state = clear_users(reflexio_url=proxy.url, user_ids=["nobody-at-all"], return_state=True)
    assert state.is_completed() and state.message.startswith(UNDID), state.message
    _assert_undone(url, before, config, proxy.url)

    # 2. during the rerun -> a restore dry run stops the rerun and deletes its rows first.
    clean_stack.llm.configure(delay_s=1.5)
    _crash_at(proxy, "during-rerun", _check_args(proxy, tmp_path, "2"))
    assert operation_running(url), "the check's rerun should outlive it"
    clean_stack.llm.configure(delay_s=0.0)
    backup_file, _ = load_backup(tmp_path / "2")
    # The dry run is only the writer that undoes the dead check first; the check died before
    # its upgrade, so its backup has no touched-ids file: both risks accepted for the dry run.
    state = restore_profiles(
        reflexio_url=proxy.url,
        backup_file=backup_file,
        dry_run=True,
        recreate_missing=True,
        assume_no_erasures=True,
        return_state=True,
    )
    assert state.is_completed() and state.message.startswith(UNDID), state.message
    assert not operation_running(url)
    _assert_undone(url, before, config, proxy.url)

    # 3. after the gate, --promote -> the next prompt check undoes it before its own work.
    _crash_at(proxy, "after-gate", _check_args(proxy, tmp_path, "3", "--promote"))
    assert rows(url, "pending"), "the kept candidate should be PENDING"
    code = cli_main(_check_args(proxy, tmp_path, "3b"))
    report = (tmp_path / "3b.md").read_text()
    assert code == 0, report
    assert f"**Before this check:** {UNDID}" in report
    _assert_undone(url, before, config, proxy.url)

    # 4. during promote: the upgrade applied -> a profile regeneration (dry run) restores
    # the profiles from the check's backup first, old ARCHIVED rows the upgrade deleted too.
    _crash_at(proxy, "during-promote", _check_args(proxy, tmp_path, "4", "--promote"))
    assert {r["profile_id"] for r in rows(url, "current")}.isdisjoint(before.ids)
    state = profile_regeneration(
        reflexio_url=proxy.url,
        backup_dir=tmp_path / "4b",
        dry_run=True,
        return_state=True,
    )
    assert state.is_completed() and state.message.startswith(UNDID), state.message
    assert "restored the profiles it had set out to upgrade" in state.message
    _assert_undone(url, before, config, proxy.url)
    measured["crash points recovered"] += 4
