"""The nightly run on a server of production shape: more ARCHIVED rows than any page,
half of them sharing one second (as after a large upgrade), and CURRENT rows of users the
rerun does not touch. Real server, real flows; rows are checked by id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.backup import open_backup
from core.kinds import PROFILE_KEYS, comparable
from core.outcome import Decision
from core.touched import read_touched_ids
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

ARCHIVED = 25_000
SAME_SECOND = 12_000
SPARED_CURRENT = 2_000
LARGE = "large"


def _ids(url: str, status: str) -> set[str]:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return {p.profile_id for p in client.list_profiles(status)}


@pytest.fixture(scope="module")
def large(stack: LocalStack):
    """The seeded users plus 25,000 ARCHIVED rows (12,000 in one second) and 2,000
    CURRENT rows of users without interactions; snapshotted once for the module."""
    stack.restore("seeded")
    result = stack.bulk_seed(
        [
            ProfileSeed("archived", ARCHIVED, users=2_500, same_second=SAME_SECOND),
            ProfileSeed("current", SPARED_CURRENT, users=1_000, sources=("chat", "email")),
        ]
    )
    stack.snapshot(LARGE)
    yield result
    stack.restore("seeded")


@pytest.fixture
def large_stack(stack: LocalStack, large) -> LocalStack:
    stack.restore(LARGE)
    return stack


def _nightly_run(url: str, backup_dir: Path):
    state = profile_regeneration(reflexio_url=url, backup_dir=backup_dir, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.decision is Decision.UPGRADED
    return outcome


def test_nightly_run_at_size_loses_nothing(large_stack, large, prefect_api, tmp_path: Path):
    url = large_stack.url
    before = {s: _ids(url, s) for s in ("current", "archived")}
    assert before["archived"] == large.profile_ids("archived")
    spared = large.profile_ids("current")

    outcome = _nightly_run(url, tmp_path)

    touched = read_touched_ids(Path(outcome.touched.ids_file))
    after = {s: _ids(url, s) for s in ("current", "archived")}
    # CURRENT: exactly the promoted rows and the rows of users the upgrade did not touch.
    assert after["current"] == set(touched["promoted"]) | spared
    assert after["archived"] == set(touched["archived"]) == before["current"] - spared
    # Every old ARCHIVED row was deleted (H1), and every one of them is in the backup.
    assert set(touched["deleted"]) == before["archived"]
    backed = open_backup(Path(outcome.backup)).ids()
    assert before["archived"] | before["current"] <= backed


SLOW_TIMEOUT_S = 2400
"""Re-creating 25,000 rows takes the server about 15 minutes (it embeds each one)."""


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
def test_restore_at_size_brings_every_row_back(large_stack, prefect_api, tmp_path: Path):
    """Slow: the server re-embeds every re-created row (about 30 ms a row here)."""
    url = large_stack.url
    before_rows = profile_rows(url, "current", "archived")
    outcome = _nightly_run(url, tmp_path)

    restored = restore_profiles(
        reflexio_url=url,
        backup_file=outcome.backup,
        records_dir=tmp_path,
        assume_no_erasures=True,  # nobody was erased: there is no record to read,
        return_state=True,
    )

    assert restored.is_completed(), restored.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        before_rows, PROFILE_KEYS
    )


def test_a_listing_that_does_not_add_up_stops_the_run_before_any_write(
    large_stack, prefect_api, tmp_path: Path
):
    url = large_stack.url
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        stats = client.get_profile_statistics()

    def drop_one_row(body: dict) -> dict:
        return {**body, "user_profiles": body["user_profiles"][1:]}

    with FaultProxy(url) as proxy:
        # A server (or a proxy) that quietly cuts a listing: its answers look complete.
        proxy.add(
            fault="body",
            method="GET",
            path="status_filter=archived",
            times=None,
            transform=drop_one_row,
        )
        state = profile_regeneration(reflexio_url=proxy.url, backup_dir=tmp_path, return_state=True)
        writes = [r for r in proxy.calls() if r.method != "GET"]

    assert state.is_failed()
    outcome = state.result(raise_on_failure=False)
    assert outcome.decision is Decision.REFUSED, outcome.message
    assert "archived" in outcome.message
    assert writes == []
    assert not list(tmp_path.glob("*.manifest.json"))  # no finished backup of partial data
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        assert client.get_profile_statistics() == stats


@pytest.mark.parametrize(
    "size",
    [
        "seeded",
        pytest.param(LARGE, marks=[pytest.mark.slow, pytest.mark.timeout(SLOW_TIMEOUT_S)]),
    ],
    ids=["seeded", "large"],
)
def test_a_row_the_server_did_not_promote_is_caught_by_id_and_rolled_back(
    stack: LocalStack, large, size: str, prefect_api, tmp_path: Path
):
    """At size this is slow: the rollback re-creates the 25,000 ARCHIVED rows the upgrade
    deleted (H1), and the server re-embeds each one."""
    stack.restore(size)
    url = stack.url
    before_rows = profile_rows(url, "current", "archived")
    stuck: list[str] = []

    def leave_one_pending(body: dict) -> dict:
        # The upgrade ran; now one promoted row goes back to PENDING, as if the server had
        # skipped it. The counts it reports stay those of a full upgrade.
        with sqlite3.connect(stack.server.db_path, timeout=30) as db:
            (row_id,) = db.execute(
                "SELECT profile_id FROM profiles WHERE status IS NULL AND profile_id "
                "NOT LIKE 'bulk-%' ORDER BY profile_id LIMIT 1"
            ).fetchone()
            db.execute("UPDATE profiles SET status = 'pending' WHERE profile_id = ?", (row_id,))
        stuck.append(row_id)
        return body

    with FaultProxy(url) as proxy:
        proxy.add(
            fault="body", method="POST", path="upgrade_all_profiles", transform=leave_one_pending
        )
        state = profile_regeneration(reflexio_url=proxy.url, backup_dir=tmp_path, return_state=True)

    assert state.is_failed()
    outcome = state.result(raise_on_failure=False)
    assert outcome.decision is Decision.ROLLED_BACK, outcome.message
    assert f"not promoted: {stuck[0]}" in outcome.message
    assert "data equals the state before the upgrade" in outcome.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        before_rows, PROFILE_KEYS
    )
    assert _ids(url, "pending") == set()
