"""Undo only what happened, on the real server: a failed upgrade is compared with the
server's rows first, then left alone (it never reached the server), or repaired by id
without the org-wide downgrade (it applied in part); an upgrade that applied but whose
answer was lost is recognised and verified, not undone; a playbook run whose read after the
rerun fails puts back every playbook its rerun tombstoned (H6). Rows are checked by id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tasks.server
from core.backup import open_backup
from core.outcome import Decision
from core.touched import read_touched_ids
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

UPGRADE = "upgrade_all_profiles"


def _by_id(url: str) -> dict[str, str | None]:
    """profile_id -> status of every CURRENT, PENDING and ARCHIVED profile."""
    return {
        r["profile_id"]: r["status"] for r in profile_rows(url, "current", "pending", "archived")
    }


@pytest.fixture
def archived_stack(seeded_stack: LocalStack, monkeypatch) -> LocalStack:
    """The seeded users plus 300 old ARCHIVED rows the upgrade will delete (H1); the state
    after a lost upgrade answer is read every 0.2 s instead of 5 s."""
    seeded_stack.bulk_seed([ProfileSeed("archived", 300, users=60)])
    monkeypatch.setattr(tasks.server, "SETTLE_INTERVAL_S", 0.2)
    return seeded_stack


def _run(url: str, backup_dir: Path):
    state = profile_regeneration(reflexio_url=url, backup_dir=backup_dir, return_state=True)
    return state, state.result(raise_on_failure=False)


def test_an_upgrade_refused_before_the_server_is_not_undone(
    archived_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = archived_stack.url
    before = _by_id(url)
    with FaultProxy(url) as proxy:
        proxy.add(fault="status", status=503, method="POST", path=UPGRADE, times=None)
        state, outcome = _run(proxy.url, tmp_path)
        assert proxy.calls("POST", UPGRADE)  # it was tried
        assert proxy.count("POST", UPGRADE) == 0  # and never reached the server
        assert proxy.count("POST", "downgrade") == 0
        assert proxy.count("POST", "add_user_profile") == 0

    assert state.is_failed()
    assert outcome.decision is Decision.UPGRADE_NOT_APPLIED, outcome.message
    assert "no downgrade ran" in outcome.message and "0/" in outcome.message
    assert _by_id(url) == before  # CURRENT and ARCHIVED by id; the candidate deleted


@pytest.mark.slow  # CI: test_faults.py's timeout after the server applied the upgrade
def test_an_upgrade_applied_whose_answer_was_lost_is_verified_not_undone(
    archived_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = archived_stack.url
    before = _by_id(url)
    with FaultProxy(url) as proxy:
        proxy.add(fault="truncate", method="POST", path=UPGRADE)
        state, outcome = _run(proxy.url, tmp_path)
        assert proxy.count("POST", UPGRADE) == 1  # sent once, never again
        assert proxy.count("POST", "downgrade") == 0

    assert state.is_completed(), outcome.message
    assert outcome.decision is Decision.UPGRADED
    touched = read_touched_ids(outcome.touched.ids_file)
    after = _by_id(url)
    assert {i for i, s in after.items() if s is None} == set(touched["promoted"])
    assert {i for i, s in after.items() if s == "archived"} == set(touched["archived"])
    assert set(touched["archived"]) == {i for i, s in before.items() if s is None}
    assert set(touched["deleted"]) == {i for i, s in before.items() if s == "archived"}
    assert not set(touched["deleted"]) & after.keys()
    backed_up = {r["profile_id"] for r in open_backup(Path(outcome.backup)).iter_rows()}
    assert set(touched["deleted"]) <= backed_up


def test_an_upgrade_applied_in_part_is_repaired_by_id_without_the_downgrade(
    archived_stack: LocalStack, prefect_api, tmp_path: Path
):
    """The server deleted the old ARCHIVED rows and archived every CURRENT row, then failed:
    half the archived rows are CURRENT again and nothing was promoted (as if it stopped
    half-way through archiving). The run must re-create only what it changed."""
    url = archived_stack.url
    before = _by_id(url)
    current_before = sorted(i for i, s in before.items() if s is None)
    half = current_before[: len(current_before) // 2]

    def stopped_half_way(body: dict) -> dict:
        marks = ",".join("?" * len(current_before))
        with sqlite3.connect(archived_stack.server.db_path, timeout=30) as db:
            db.execute(
                f"UPDATE profiles SET status = 'pending' WHERE status IS NULL "
                f"AND profile_id NOT IN ({marks})",
                current_before,
            )
            db.execute(
                f"UPDATE profiles SET status = NULL WHERE profile_id IN "
                f"({','.join('?' * len(half))})",
                half,
            )
        return {**body, "success": False, "message": "Failed to upgrade: database is locked"}

    with FaultProxy(url) as proxy:
        proxy.add(fault="body", method="POST", path=UPGRADE, transform=stopped_half_way)
        state, outcome = _run(proxy.url, tmp_path)
        assert proxy.count("POST", "downgrade") == 0

    assert state.is_failed()
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert "path: repair by id only" in outcome.message
    assert f"0/{len(current_before)} promoted" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert _by_id(url) == before


def _current_playbooks(url: str) -> set[tuple[str, str]]:
    """(user, content) of every CURRENT v1 user playbook."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        rows = client.list_user_playbooks("current", agent_version="v1")
    return {(str(r.user_id), r.content) for r in rows}


def test_a_failed_read_after_a_playbook_rerun_puts_every_tombstoned_playbook_back(
    seeded_stack: LocalStack, prefect_api, tmp_path: Path
):
    """The read after the rerun answers 503 to every try (5): the run stops before the gate
    and puts back, from its backup, every CURRENT playbook its rerun tombstoned (H6)."""
    url = seeded_stack.url
    before = _current_playbooks(url)
    assert before
    with FaultProxy(url) as proxy:
        proxy.add(
            fault="status",
            status=503,
            path="get_user_playbooks",
            armed_by="rerun_playbook_generation",
            times=5,
        )
        state = playbook_regeneration(
            reflexio_url=proxy.url,
            backup_dir=tmp_path,
            aggregate=False,
            return_state=True,
        )
        assert proxy.calls("POST", "upgrade_all_user_playbooks") == []

    outcome = state.result(raise_on_failure=False)
    assert state.is_failed()
    assert outcome.decision is Decision.ERROR, outcome.message
    assert "Stopped after the rerun, before any upgrade" in outcome.message
    assert "were put back from the backup as CURRENT rows" in outcome.message
    assert _current_playbooks(url) == before
