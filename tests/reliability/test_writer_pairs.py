"""Every pair of writing flows started at once on one server: one writes, the other is
refused by the server's lock having written nothing, and both say so.

The six writers (both regenerations, restore, clear-user-data, the sweep, the prompt check)
run against the real server through the fault proxy. Once both are ready, the proxy holds
the first request that comes after the start for a few seconds: the winner's, sent under
the lock (the other is still waiting for it), so the winner holds the lock longer than the
other waits. The refused run must name the lock and
say nothing was written, and the proxy must have seen none of the routes only the refused
writer uses. 15 pairs; CI runs 3 of them (IN_CI), `make test-all` every pair.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.backup import BackupWriter
from deployments.catalogue import lock_name
from flows.clear_users import clear_users
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import prompt_change
from flows.restore import restore_profiles
from flows.sweep import manual_sweep
from local_stack.fault_proxy import FaultProxy
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import profile_rows
from tests.tally import claim

pytestmark = pytest.mark.reliability

HOLD_S = 6.0
"""How long the winner's first request is held (it holds the lock meanwhile)."""
LOSER_WAIT_S = 2.0
"""How long each writer waits for the lock."""

Run = Callable[[], Any]
"""One writer's flow run, ready to start (returns its final state)."""


def _profiles(url: str, work: Path) -> Run:
    params = dict(reflexio_url=url, backup_dir=str(work), dry_run=True, lock_timeout_s=LOSER_WAIT_S)
    return lambda: profile_regeneration(**params, return_state=True)


def _playbooks(url: str, work: Path) -> Run:
    params = dict(
        reflexio_url=url,
        agent_version="v1",
        backup_dir=str(work),
        dry_run=True,
        lock_timeout_s=LOSER_WAIT_S,
    )
    return lambda: playbook_regeneration(**params, return_state=True)


def _restore(url: str, work: Path) -> Run:
    """Restore a backup of the server as it is now (taken before the start): nothing to
    change, after reading every row under the lock."""
    with BackupWriter(work, "profiles", url, "pairs-0001") as writer:
        writer.write(profile_rows(url, "current", "archived"))
    params = dict(
        reflexio_url=url,
        backup_file=writer.info.manifest_path,
        records_dir=str(work),
        lock_timeout_s=LOSER_WAIT_S,
        recreate_missing=True,  # a hand-made backup: no touched-ids file
        assume_no_erasures=True,
    )
    return lambda: restore_profiles(**params, return_state=True)


def _clear(url: str, work: Path) -> Run:
    params = dict(
        reflexio_url=url,
        user_ids=["nobody-in-pairs"],
        records_dir=str(work),
        lock_timeout_s=LOSER_WAIT_S,
    )
    return lambda: clear_users(**params, return_state=True)


def _sweep(url: str, work: Path) -> Run:
    params = dict(
        reflexio_url=url,
        sources=["chat"],
        kinds=["profiles"],
        manual_calls_per_minute=120,
        lock_timeout_s=LOSER_WAIT_S,
    )
    return lambda: manual_sweep(**params, return_state=True)


def _prompt_check(url: str, work: Path) -> Run:
    """A dry check of a candidate that changes nothing (the server's own window_size)."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        config = client.get_config()
    params = dict(
        reflexio_url=url,
        candidate_config=json.dumps({"window_size": config["window_size"]}),
        backup_dir=str(work),
        lock_timeout_s=LOSER_WAIT_S,
    )
    return lambda: prompt_change(**params, return_state=True)


WRITERS: dict[str, tuple[Callable[[str, Path], Run], frozenset[str]]] = {
    "profile-regeneration": (_profiles, frozenset({"rerun_profile_generation"})),
    "playbook-regeneration": (_playbooks, frozenset({"rerun_playbook_generation"})),
    "restore-profiles": (_restore, frozenset()),
    "clear-user-data": (_clear, frozenset({"clear_user_data"})),
    "manual-generation-sweep": (_sweep, frozenset({"manual_profile_generation"})),
    "prompt-change": (_prompt_check, frozenset({"set_config", "update_config"})),
}
"""Each writer, and the routes only it writes to (what the refused one must not have sent)."""
IN_CI = {
    frozenset({"restore-profiles", "clear-user-data"}),
    frozenset({"profile-regeneration", "clear-user-data"}),
    frozenset({"prompt-change", "manual-generation-sweep"}),
}
"""The pairs `make test` runs (a cheap pair, a regeneration, a prompt check); the other 12
are marked slow."""
PAIRS = [
    pytest.param(a, b, marks=() if {a, b} in IN_CI else pytest.mark.slow, id=f"{a}+{b}")
    for a, b in itertools.combinations(WRITERS, 2)
]


def start_together(proxy: FaultProxy, tmp_path: Path, names: tuple[str, str]) -> dict[str, Any]:
    """Both writers prepared, then the hold set, then both released by one barrier, each in
    a thread running a copy of this context."""
    url = proxy.url
    ready = threading.Barrier(len(names) + 1)
    barrier = threading.Barrier(len(names) + 1)
    states: dict[str, Any] = {}

    def run(name: str) -> None:
        work = tmp_path / name
        work.mkdir()
        prepare, _ = WRITERS[name]
        start = prepare(url, work)
        ready.wait()
        barrier.wait()
        states[name] = start()

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, name)) for name in names
    ]
    for thread in threads:
        thread.start()
    ready.wait(300)
    proxy.clear()
    proxy.add(fault="delay", path="/", nth=1, delay_s=HOLD_S)
    barrier.wait(30)
    for thread in threads:
        thread.join(600)
    return states


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_two_writers_at_once_one_writes_the_other_is_refused(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path, first: str, second: str
):
    states = start_together(proxy, tmp_path, (first, second))
    assert_one_wrote_the_other_was_refused(proxy, states)


def assert_one_wrote_the_other_was_refused(proxy: FaultProxy, states: dict[str, Any]) -> None:
    """Exactly one writer was refused by the lock, said so and that it wrote nothing, and
    the proxy saw none of the routes only it writes to."""
    refused = {n: s for n, s in states.items() if s.message and "holds its lock" in s.message}
    assert len(refused) == 1, {n: s.message for n, s in states.items()}
    (loser,) = refused
    (winner,) = set(states) - refused.keys()
    message = refused[loser].message
    assert f"'{lock_name(proxy.url)}'" in message and "Nothing was written" in message, message
    assert states[winner].message and "holds its lock" not in states[winner].message
    sent = {r.path.split("?")[0].rsplit("/", 1)[-1] for r in proxy.records if r.method != "GET"}
    only_loser = WRITERS[loser][1] - WRITERS[winner][1]
    assert not sent & only_loser, (loser, sent & only_loser)
    claim("pairs of writers started at once")
