"""The prune of old ARCHIVED rows ahead of the upgrade (core/prune.py, H17), on the real
server, checked by id: it deletes exactly the old ARCHIVED rows the backup holds, in
batches, each sent after the journal names them; a run stopped mid-prune whose rollback
cannot finish is repaired by the next writer from what the server shows. Small for CI: 30
old ARCHIVED rows in batches of 8 (core.prune.PRUNE_BATCH patched; the batching is the
same at any size)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.backup import open_backup
from core.outcome import Decision
from core.touched import read_touched_ids
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from tasks.journal import load_journal
from tests.integration.pipeline_helpers import rows_by_id, run_backup
from tests.reliability.helpers import restore_dry_run

pytestmark = pytest.mark.integration

OLD = 30
BATCH = 8


@pytest.fixture
def old_archived(seeded_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The seeded stack plus OLD old ARCHIVED rows; deletes go BATCH ids a call."""
    monkeypatch.setattr("core.prune.PRUNE_BATCH", BATCH)
    seeded_stack.bulk_seed([ProfileSeed("archived", OLD, users=10, id_prefix="old")])
    yield {p for p, (status, _, _) in rows_by_id(seeded_stack.url).items() if status == "archived"}
    seeded_stack.restore("seeded")


def _server_ids(db_path: Path) -> dict[str, str | None]:
    with sqlite3.connect(db_path, timeout=30) as db:
        return dict(db.execute("SELECT profile_id, status FROM profiles").fetchall())


def test_the_prune_deletes_exactly_the_backed_up_old_archived_rows_journaled_first(
    seeded_stack: LocalStack, old_archived: set[str], prefect_api, tmp_path: Path
):
    seen: list[tuple[Any, dict[str, str | None]]] = []
    with FaultProxy(seeded_stack.url) as proxy:

        def after_delete(body: Any) -> Any:  # the journal as the batch ran, and the rows
            seen.append((load_journal(proxy.url), _server_ids(seeded_stack.server.db_path)))
            return body

        proxy.add(
            fault="body", method="DELETE", path="delete_prof", times=None, transform=after_delete
        )
        before = rows_by_id(proxy.url)
        state = profile_regeneration(
            reflexio_url=proxy.url, backup_dir=tmp_path, prune_archived_above=0, return_state=True
        )
        order = [(r.method, r.path.split("?")[0]) for r in proxy.calls() if r.method != "GET"]

    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED, outcome.message
    deletes = [i for i, call in enumerate(order) if call[0] == "DELETE"]
    upgrade = order.index(("POST", "/api/upgrade_all_profiles"))
    assert len(deletes) == -(-len(old_archived) // BATCH) and max(deletes) < upgrade
    journal, after_prune = seen[0][0], seen[-1][1]
    assert journal is not None and journal.step == "upgrade"
    touched = read_touched_ids(journal.touched)
    assert old_archived <= set(touched["deleted"])  # named before the first batch
    gone = set(before) - set(after_prune)
    assert gone == old_archived  # exactly those ids, nothing else
    kept = {p: s for p, s in after_prune.items() if s in (None, "archived")}
    assert kept == {p: s for p, (s, _, _) in before.items() if s != "pending" and p not in gone}
    assert old_archived <= open_backup(Path(outcome.backup)).ids()
    assert all(j is not None and j.touched == journal.touched for j, _ in seen)


def test_a_run_stopped_mid_prune_is_repaired_by_the_next_writer(
    seeded_stack: LocalStack, old_archived: set[str], prefect_api, tmp_path: Path
):
    before = rows_by_id(seeded_stack.url)
    with FaultProxy(seeded_stack.url) as proxy:
        # The second batch is refused (a 400 is not retried), and so is every re-create:
        # the run's own rollback cannot finish and leaves its journal.
        proxy.add(fault="status", status=400, method="DELETE", path="delete_prof", nth=2)
        proxy.add(fault="status", status=400, method="POST", path="add_user_profile", times=None)
        state = profile_regeneration(
            reflexio_url=proxy.url, backup_dir=tmp_path, prune_archived_above=0, return_state=True
        )
        assert state.is_failed()
        stopped = rows_by_id(proxy.url)
        pruned = old_archived - set(stopped)
        assert len(pruned) == BATCH, "the first batch was pruned, then the run stopped"
        assert load_journal(proxy.url) is not None
        proxy.clear()

        # The next writer (a restore dry run of the run's backup: a cheap writer) repairs
        # first, from the journal and what the server shows.
        repaired = restore_dry_run(
            proxy.url,
            backup_file=run_backup(tmp_path),
            records_dir=tmp_path / "records",
            assume_no_erasures=True,
        )

        assert repaired.is_completed(), repaired.message
        assert load_journal(proxy.url) is None
    assert repaired.message.startswith("Repaired an unfinished profile regeneration")
    assert "data equals the state before the upgrade" in repaired.message, repaired.message
    assert rows_by_id(seeded_stack.url) == before  # the pruned rows re-created, by id
