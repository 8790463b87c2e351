"""The nightly run on a server of production size: 25,000 ARCHIVED rows, half of them
sharing one second (as after a large upgrade), and 25,000 CURRENT rows of 5,000 users, TALKING
of whom have a stored conversation, so the rerun regenerates their rows through the gate and
the upgrade; the other users' rows must come through untouched. Real server, real flows,
stand-in LLM; rows are checked by id.

The session's server calls the LLM in its own process (`llm_calls_in_process`, tests/
conftest.py): the rerun makes about 12 calls a user (2 chat, 10 embeddings), and the fork the
server would make for each chat call costs more than the whole rest of the run (measured
here: ~7.8 s a user with the fork at load 19-20, ~1.2 s without)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from core.kinds import PROFILE_KEYS, comparable
from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import SeedResult
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.settings import USER_AGENT
from tests.integration.at_size import (
    LARGE,
    RUN_TIMEOUT_S,
    SLOW_TIMEOUT_S,
    TALKING,
    assert_nightly_regenerates_the_talking_users,
)
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration


def _ids(url: str, status: str) -> set[str]:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return {p.profile_id for p in client.list_profiles(status)}


def test_the_server_lists_the_seeded_conversations(large_stack, large: SeedResult):
    """What the rerun reads, as the server itself lists it: a talking user's interactions
    are the seeded turns (by request id and content); another user has none."""
    (talk,) = large.conversations
    users = {0: talk.user_ids()[0], TALKING - 1: talk.user_ids()[-1]}
    for number, user in users.items():
        listed = _interactions(large_stack.url, user)
        assert {i["request_id"] for i in listed} == {talk.request_id(number)}
        assert sorted(i["content"] for i in listed) == sorted(talk.lines(number))
    assert _interactions(large_stack.url, talk.of.user_id(TALKING)) == []  # no conversation


def _interactions(url: str, user: str) -> list[dict]:
    response = httpx.post(
        f"{url}/api/get_interactions",
        json={"user_id": user, "top_k": 50},
        headers={"User-Agent": USER_AGENT},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["interactions"]


@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_nightly_run_at_size_regenerates_the_talking_users_and_loses_nothing(
    large_stack, large: SeedResult, prefect_api, tmp_path: Path
):
    assert len(large.talking_users()) == TALKING
    assert_nightly_regenerates_the_talking_users(large_stack.url, large, tmp_path)


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

    # The proxy lives as long as the test may: its default 30 minutes closed it mid-undo
    # at 25,000 rows (the re-creation takes the server 15-33 minutes).
    with FaultProxy(url, max_lifetime_s=SLOW_TIMEOUT_S) as proxy:
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
