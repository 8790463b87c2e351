"""Two profile regenerations at once against one server: never both upgrade."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from deployments.catalogue import lock_name
from flows.profile_regeneration import profile_regeneration
from local_stack.fault_proxy import FaultProxy
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.reliability.helpers import UPGRADE, Snapshot, assert_consistent

pytestmark = pytest.mark.reliability

WINNER_LLM_DELAY_S = 10.0
"""Each stand-in answer takes this long until the first run ends: the winner's rerun holds
the lock however late the loser starts on a loaded machine (with the server's LLM calls in
process a seeded rerun takes a few seconds, and a fixed 0.5 s a call let the loser, started
seconds late, find the lock free and run after the winner)."""
LOSER_WAIT_S = 5.0
"""How long the loser waits for the lock before it is refused."""


def _together(*params: dict[str, Any], when_one_ends: Callable[[], None] = lambda: None) -> list:
    """Start one flow run per params in threads released by one barrier (each thread runs in
    a copy of this context, so all use the test's Prefect API); `when_one_ends` is called
    as soon as the first run has ended."""
    barrier = threading.Barrier(len(params))
    states: list = [None] * len(params)

    def run(i: int, p: dict[str, Any]) -> None:
        barrier.wait()
        states[i] = profile_regeneration(**p, return_state=True)

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, i, p))
        for i, p in enumerate(params)
    ]
    for thread in threads:
        thread.start()
    while all(state is None for state in states) and any(t.is_alive() for t in threads):
        time.sleep(0.2)
    when_one_ends()
    for thread in threads:
        thread.join(300)
    return states


def test_two_runs_on_one_server_one_is_refused(clean_stack, prefect_api, proxy, tmp_path, measured):
    """The first run to take the server's lock regenerates; the other waits LOSER_WAIT_S and
    is refused. The stand-in answers slowly until one run has ended, so the winner holds the
    lock for longer than the loser waits even when the two start seconds apart on a loaded
    machine (the winner's own slow acquisition no longer counts against any timeout:
    flows/lock.py). A lock that let both in fails this test: two reruns, and no refusal
    naming the lock."""
    before = Snapshot.take(clean_stack.url)
    clean_stack.llm.configure(delay_s=WINNER_LLM_DELAY_S)
    try:
        states = _together(
            *(
                dict(
                    reflexio_url=proxy.url,
                    backup_dir=tmp_path / str(i),
                    lock_timeout_s=LOSER_WAIT_S,
                )
                for i in range(2)
            ),
            when_one_ends=lambda: clean_stack.llm.configure(delay_s=0),
        )
    finally:
        clean_stack.llm.configure(delay_s=0)
    outcomes = sorted(s.type.value for s in states)
    assert outcomes == ["COMPLETED", "FAILED"], [s.message for s in states]
    (refused,) = [s for s in states if s.is_failed()]
    assert f"holds its lock '{lock_name(proxy.url)}'" in refused.message, refused.message
    assert proxy.count("POST", "rerun_profile_generation") == 1
    assert proxy.count("POST", UPGRADE) == 1
    assert assert_consistent(clean_stack.url, before) == "upgraded"
    measured["pairs of writers started at once"] += 1


def test_two_urls_for_one_server_never_both_upgrade(clean_stack, prefect_api, tmp_path):
    """Two proxies in front of one server (two host:ports, so two locks and both runs get
    one); the server refuses the second rerun while the first runs. The stand-in answers
    slowly until one run has ended, so the first rerun is still running however late the
    second run starts (with a fixed 0.3 s a call, a second run started late found the first
    one's candidate instead, in a clean-clone CI rehearsal)."""
    before = Snapshot.take(clean_stack.url)
    clean_stack.llm.configure(delay_s=WINNER_LLM_DELAY_S)
    try:
        with FaultProxy(clean_stack.url) as one, FaultProxy(clean_stack.url) as two:
            states = _together(
                dict(reflexio_url=one.url, backup_dir=tmp_path / "1"),
                dict(reflexio_url=two.url, backup_dir=tmp_path / "2"),
                when_one_ends=lambda: clean_stack.llm.configure(delay_s=0),
            )
            upgrades = one.count("POST", UPGRADE) + two.count("POST", UPGRADE)
    finally:
        clean_stack.llm.configure(delay_s=0)
    messages = [s.message for s in states]
    assert upgrades <= 1, messages
    assert sum(s.is_completed() for s in states) == upgrades, messages
    assert any("in progress" in m for m in messages), messages
    assert assert_consistent(clean_stack.url, before) == ("upgraded" if upgrades else "unchanged")


def test_run_during_someone_elses_rerun_is_refused_without_writing(
    clean_stack, prefect_api, proxy, tmp_path
):
    """H4: a rerun started outside the pipelines is running: the flow refuses at once."""
    before = Snapshot.take(clean_stack.url)
    clean_stack.llm.configure(delay_s=0.5)
    with ReflexioClient(ReflexioSettings(url=clean_stack.url)) as client:
        op = client.rerun_profile_generation()
        state = profile_regeneration(reflexio_url=proxy.url, backup_dir=tmp_path, return_state=True)
        clean_stack.llm.configure(delay_s=0)
        client.wait_for_operation("profile_generation", op.operation_id, 180)
        pending = [p.profile_id for p in client.list_profiles("pending")]
        client.delete_profiles(pending)  # the outside rerun's rows: not the flow's to keep
    assert state.is_failed() and "in progress" in state.message, state.message
    assert proxy.calls(method="POST") == []
    assert assert_consistent(clean_stack.url, before) == "unchanged"
