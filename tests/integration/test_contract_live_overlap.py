"""H18 against the real server: a rerun that reaches a user whose live extraction holds the
user's extraction lease waits for it, then runs over what the live conversation added; it
is not queued, skipped or failed (docs/hazards.md, H18).

Whether the live extraction holds the lease is read from the server's SQLite
(`learning_work`, as local_stack/stall.py writes the stall row), so the overlap is made
deterministic rather than hoped for. About 25 s (the stand-in answers in 1 s a call).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from local_stack.seed import conversation_turns
from local_stack.stack import LocalStack
from reflexio_api import ReflexioError
from tests.integration.conftest import client_for

pytestmark = pytest.mark.integration

LINE = "I moved to Lisbon last month and now work for a fintech."


def _worker_holds_lease(db_path: Path, user_id: str) -> bool:
    """Whether the server's extraction worker (not an explicit run) holds the user's lease."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT lease_owner, lease_until FROM learning_work WHERE user_id=? "
            "AND lease_token IS NOT NULL",
            (user_id,),
        ).fetchone()
    conn.close()
    return row is not None and row[0] != "explicit" and row[1] > time.time()


def test_h18_a_rerun_waits_for_the_users_live_extraction_then_learns_from_it(
    seeded_stack: LocalStack,
) -> None:
    db_path = seeded_stack.server.db_path
    seeded_stack.llm.configure(delay_s=1.0)  # the live extraction holds the lease for seconds
    with client_for(seeded_stack) as client:
        client.publish_interaction(
            "alice", "alice-live", "chat", "v1", conversation_turns([LINE]), force_extraction=True
        )
        deadline = time.monotonic() + 60
        while not _worker_holds_lease(db_path, "alice"):
            assert time.monotonic() < deadline, "the live extraction never took alice's lease"
            time.sleep(0.02)
        started = client.rerun_profile_generation(user_id="alice")
        held_checks = 0
        while True:  # status read first: if the lease is still held after it, it was then
            try:
                status = client.get_operation_status("profile_generation")
            except ReflexioError:  # the slot can be half-written while the rerun starts
                status = None
            if not _worker_holds_lease(db_path, "alice"):
                break
            if status is not None and status.operation_id == started.operation_id:
                assert status.processed_users == 0, "the rerun did not wait for the lease"
                held_checks += 1
            time.sleep(0.1)
        final = client.wait_for_operation("profile_generation", started.operation_id, timeout_s=120)
        pending = client.list_profiles("pending")
    seeded_stack.llm.configure(delay_s=0)
    assert held_checks, "the rerun was never seen while the live extraction held the lease"
    assert (final.status, final.processed_users, final.failed_users) == ("completed", 1, 0)
    assert {p.user_id for p in pending} == {"alice"}
    assert any(LINE in p.content for p in pending)  # it ran over the live conversation too
