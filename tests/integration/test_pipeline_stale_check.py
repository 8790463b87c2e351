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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.models import AUTO_RECOVERED_PREFIX
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

PROGRESS_KEY = "profile_generation::%::progress"
AGED_S = 3600
"""How far back the running rerun's start is moved: past the server's 600 s."""
STALE_CHECK_WAIT_S = 60.0


class RerunAger(threading.Thread):
    """Moves the start of the first profile rerun it sees running an hour back, so the
    server's stale check fails it at the next status read; records the slot's error
    messages. With `restore`, puts the start back once the check fired (a flow waiting for
    the rerun reads it as the rerun's start: rows written since count as live traffic).
    Touches that operation only, and stops with the `aging` context."""

    def __init__(self, db_path: Path, restore: bool) -> None:
        super().__init__(daemon=True)
        self.db_path = db_path
        self.restore = restore
        self.messages: set[str] = set()
        self.stop = threading.Event()
        self.operation: tuple[str, int] | None = None
        """The aged rerun: its request id and its real start."""

    def run(self) -> None:
        with sqlite3.connect(self.db_path, timeout=30) as db:
            while not self.stop.wait(0.02):
                row = db.execute(
                    "SELECT operation_state FROM _operation_state WHERE service_name LIKE ?",
                    (PROGRESS_KEY,),
                ).fetchone()
                state = json.loads(row[0]) if row else {}
                if self.operation is None and state.get("status") == "in_progress":
                    self.operation = (state["current_request_id"], state["started_at"])
                if self.operation is None or state.get("current_request_id") != self.operation[0]:
                    continue
                if state.get("error_message"):
                    self.messages.add(state["error_message"])
                real_start = self.operation[1]
                put_back = self.restore and self.stale_check_fired()
                wanted = real_start if put_back else real_start - AGED_S
                if state["started_at"] != wanted:
                    db.execute(
                        "UPDATE _operation_state SET operation_state = "
                        "json_set(operation_state, '$.started_at', ?) WHERE service_name LIKE ? "
                        "AND json_extract(operation_state, '$.current_request_id') = ?",
                        (wanted, PROGRESS_KEY, self.operation[0]),
                    )
                    db.commit()

    def stale_check_fired(self) -> bool:
        """Whether the slot showed the server's stale-check failure."""
        return any(m.startswith(AUTO_RECOVERED_PREFIX) for m in self.messages)


@contextmanager
def aging(stack: LocalStack, restore: bool) -> Iterator[RerunAger]:
    """A RerunAger on the stack's server while the stand-in answers slowly (1 s a call:
    the rerun outlasts the run's checks); both stopped on the way out, whatever happened."""
    stack.llm.configure(delay_s=1.0)
    ager = RerunAger(stack.server.db_path, restore)
    ager.start()
    try:
        yield ager
    finally:
        ager.stop.set()
        ager.join()
        stack.llm.configure(delay_s=0)


def test_a_rerun_the_server_calls_stale_while_it_runs_is_waited_for_and_upgraded(
    seeded_stack, prefect_api, tmp_path: Path
) -> None:
    """The flow waits through the server's failure for the rerun's own end, then upgrades."""
    url = seeded_stack.url
    before = {r["profile_id"] for r in profile_rows(url, "current", "archived")}
    with aging(seeded_stack, restore=True) as ager:
        state = profile_regeneration(reflexio_url=url, backup_dir=tmp_path, return_state=True)
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
) -> None:
    """H4 through H19: someone else's rerun, failed by the server's stale check and still
    working, is a running operation: the flow refuses before any write."""
    url = seeded_stack.url
    rows = {s: profile_rows(url, s) for s in ("current", "archived")}
    with (
        aging(seeded_stack, restore=False) as ager,
        ReflexioClient(ReflexioSettings(url=url)) as client,
        FaultProxy(url) as proxy,
    ):
        op = client.rerun_profile_generation()
        deadline = time.monotonic() + STALE_CHECK_WAIT_S
        while not ager.stale_check_fired():  # the server's check fires on a status read
            assert time.monotonic() < deadline, f"the check never fired: {ager.messages}"
            assert client.get_operation_status("profile_generation").operation_id == op.operation_id
            time.sleep(0.2)
        state = profile_regeneration(reflexio_url=proxy.url, backup_dir=tmp_path, return_state=True)
        seeded_stack.llm.configure(delay_s=0)
        ended = client.wait_for_operation("profile_generation", op.operation_id, 180)
        client.delete_profiles([p.profile_id for p in client.list_profiles("pending")])
    assert ended.status == "completed"  # it was working all along
    assert state.is_failed() and "still working: H19" in state.message, state.message
    assert proxy.calls(method="POST") == []
    assert {s: profile_rows(url, s) for s in ("current", "archived")} == rows
