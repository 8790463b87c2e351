"""H19 on the real server: a rerun its stale check marks failed while it runs.

reflexio-ai 0.2.32 fails any operation whose `started_at` is more than 600 s old when its
status is read, and the operation goes on to write its own end. Here the running rerun's
`started_at` is moved an hour back in the server's database, so the server's own check
fires at the flow's next poll, after seconds instead of ten minutes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from local_stack.fault_proxy import FaultProxy
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.models import AUTO_RECOVERED_PREFIX
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

PROGRESS_KEY = "profile_generation::%::progress"


class RerunAger(threading.Thread):
    """Moves the running profile rerun's start an hour back until the server's stale check
    has marked it failed, then puts the start back (the flow reads it as the rerun's
    start: rows written since count as live traffic); records the slot's error messages."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(daemon=True)
        self.db_path = db_path
        self.messages: set[str] = set()
        self.stop = threading.Event()
        self.started_at: int | None = None

    def run(self) -> None:
        with sqlite3.connect(self.db_path, timeout=30) as db:
            while not self.stop.wait(0.02):
                row = db.execute(
                    "SELECT operation_state FROM _operation_state WHERE service_name LIKE ?",
                    (PROGRESS_KEY,),
                ).fetchone()
                state = json.loads(row[0]) if row else {}
                if state.get("error_message"):
                    self.messages.add(state["error_message"])
                if state.get("status") == "in_progress" and self.started_at is None:
                    self.started_at = state["started_at"]
                if self.started_at is None or state.get("started_at") is None:
                    continue
                wanted = self.started_at - 3600 * (not self.stale_check_fired())
                if state["started_at"] != wanted:
                    db.execute(
                        "UPDATE _operation_state SET operation_state = "
                        "json_set(operation_state, '$.started_at', ?) WHERE service_name LIKE ?",
                        (wanted, PROGRESS_KEY),
                    )
                    db.commit()

    def stale_check_fired(self) -> bool:
        """Whether the slot showed the server's stale-check failure."""
        return any(m.startswith(AUTO_RECOVERED_PREFIX) for m in self.messages)


def test_a_rerun_the_server_calls_stale_while_it_runs_is_waited_for_and_upgraded(
    seeded_stack, prefect_api, tmp_path: Path
):
    url = seeded_stack.url
    before = {r["profile_id"] for r in profile_rows(url, "current", "archived")}
    seeded_stack.llm.configure(delay_s=0.5)  # the rerun runs for seconds after the check fires
    ager = RerunAger(seeded_stack.server.db_path)
    ager.start()
    try:
        state = profile_regeneration(reflexio_url=url, backup_dir=tmp_path, return_state=True)
    finally:
        ager.stop.set()
        ager.join()
    assert ager.stale_check_fired(), f"the server's stale check never fired: {ager.messages}"
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED, state.message
    current = {r["profile_id"] for r in profile_rows(url, "current")}
    assert current and current.isdisjoint(before), state.message
    assert outcome.touched.promoted == len(current)
    assert profile_rows(url, "pending") == []


def test_a_run_during_a_rerun_the_server_calls_stale_is_refused_without_writing(
    seeded_stack, prefect_api, tmp_path: Path
):
    """H4 through H19: someone else's rerun, failed by the server's stale check and still
    working, is a running operation: the flow refuses before any write."""
    url = seeded_stack.url
    rows = {s: profile_rows(url, s) for s in ("current", "pending", "archived")}
    seeded_stack.llm.configure(delay_s=1.0)  # the rerun outlasts the run's checks
    ager = RerunAger(seeded_stack.server.db_path)
    ager.start()
    with ReflexioClient(ReflexioSettings(url=url)) as client, FaultProxy(url) as proxy:
        op = client.rerun_profile_generation()
        while not ager.stale_check_fired():  # the server's check fires on a status read
            assert client.get_operation_status("profile_generation").operation_id == op.operation_id
            time.sleep(0.2)
        state = profile_regeneration(reflexio_url=proxy.url, backup_dir=tmp_path, return_state=True)
        seeded_stack.llm.configure(delay_s=0)
        ended = client.wait_for_operation("profile_generation", op.operation_id, 180)
        ager.stop.set()
        client.delete_profiles([p.profile_id for p in client.list_profiles("pending")])
    ager.join()
    assert ended.status == "completed"  # it was working all along
    assert state.is_failed() and "still working: H19" in state.message, state.message
    assert proxy.calls(method="POST") == []
    assert {s: profile_rows(url, s) for s in ("current", "archived")} == {
        s: rows[s] for s in ("current", "archived")
    }
