"""Every pair of writing flows started at once on one server, each with real work to do:
one writes, the other is refused by the server's lock having written nothing, and the rows
show it, by id.

The six writers are test_writer_faults.py's cases (one copy of each writer's setup, run and
check), each set up so that it writes: a profile upgrade; a v1 playbook upgrade; a restore
of a backup taken before one CURRENT row was deleted (it re-creates it); a clear of a
seeded user; a sweep with a conversation stored unlearned to learn (`NewcomerSweep`); a
prompt check of a changed extraction prompt (CANDIDATE: the config is written, both kinds
regenerated, then the config put back). Both writers are set up (the restore's first: the
row it deletes must be gone from the other's snapshot), every row on the server is read
(`server_rows`), then both start against the real server through the fault proxy. Once
both are ready, the proxy holds the first request that comes after the start for a few
seconds: the winner's, sent under the lock (the other is still waiting for it), so the
winner holds the lock longer than the other waits.

Afterwards the refused run names the lock and says nothing was written, and the proxy saw
none of the write routes only the refused writer uses. The winner completed and its rows
are what its run says (its case's check by id). And every row on the server is what the
winner's own result makes of the rows before (`EXPECTED`): so the loser wrote nothing, and
a clear left every other user's rows as they were. 15 pairs; CI runs 3 that together cover
the six writers (IN_CI), `make test-all` every pair.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.touched import read_touched_ids
from deployments.catalogue import lock_name
from local_stack.fault_proxy import FaultProxy
from local_stack.seed import seed
from local_stack.stack import LocalStack
from tests.conftest import SEEDED
from tests.reliability.helpers import CHECKED_BY_ID, Key, ServerRows, server_rows
from tests.reliability.test_writer_faults import (
    Case,
    Clear,
    Playbooks,
    Profiles,
    PromptCheck,
    Restore,
    Sweep,
)
from tests.tally import PAIRS_CHECKED, claim

pytestmark = pytest.mark.reliability

HOLD_S = 6.0
"""How long the winner's first request is held (it holds the lock meanwhile)."""
LOSER_WAIT_S = 2.0
"""How long each writer waits for the lock."""

NEWCOMER = "pairs-newcomer"


class NewcomerSweep(Sweep):
    """The sweep with work to do: a new user's conversation stored without learning (the
    server waits for a window to fill), which the sweep's manual generation learns."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        lines = ["Hi, I'm Nadia, a pharmacist in Porto.", "I like crosswords on Sundays."]
        seed(url, users={NEWCOMER: lines}, sources=("chat",), learn=False)
        super().setup(url, proxy_url, work)


Expected = Callable[[Any, Any, ServerRows, ServerRows], ServerRows]
"""(the winner's case, its final state, rows before, rows after) -> the rows the winner's
result makes of `before`; rows its own check verified are taken from `after`."""


def _but(before: ServerRows, after: ServerRows, owned: Callable[[Key], bool]) -> ServerRows:
    """`before`, but the rows `owned` names as they are in `after` (the winner's own check
    verified those)."""
    kept = {k: v for k, v in before.items() if not owned(k)}
    return kept | {k: v for k, v in after.items() if owned(k)}


def _upgraded_profiles(
    case: Profiles, state: Any, before: ServerRows, after: ServerRows
) -> ServerRows:
    """Only the profiles the run's touched-ids file names changed."""
    touched = read_touched_ids(state.result().touched.ids_file)
    named = {i for part in ("promoted", "archived", "deleted") for i in touched[part]}
    named |= set(touched.get("discarded_stale_pending", []))
    return _but(before, after, lambda k: k[0] == "profile" and k[1] in named)


def _v1_playbooks(case: Case, state: Any, before: ServerRows, after: ServerRows) -> ServerRows:
    """Only v1's user playbooks changed (an upgrade, or a prompt check's rerun undone: H6's
    tombstoned rows re-created with new ids, compared by content in the case's check)."""
    return _but(before, after, lambda k: k[0] == "playbook v1")


def _restored(case: Restore, state: Any, before: ServerRows, after: ServerRows) -> ServerRows:
    """CURRENT and ARCHIVED profiles exactly the backup's rows; the rest as before."""
    backup = {
        ("profile", r["profile_id"]): (r["status"], r["user_id"], r["content"]) for r in case.rows
    }
    kept = {k: v for k, v in before.items() if k[0] != "profile" or v[0] == "pending"}
    return kept | backup


def _cleared(case: Clear, state: Any, before: ServerRows, after: ServerRows) -> ServerRows:
    """Every row of the cleared user gone, every other user's row as before."""
    return {k: v for k, v in before.items() if k[0] == "config" or v[1] != case.user}


def _swept(case: Sweep, state: Any, before: ServerRows, after: ServerRows) -> ServerRows:
    """Every row as before, plus the CURRENT profiles the run says it added (its summary
    names counts, not ids: the new ids are those after the run that were not before)."""
    (step,) = state.result()["steps"]
    added = {k: v for k, v in after.items() if k not in before and k[0] == "profile"}
    assert step["added"] == len(added) > 0 and step["removed"] == 0, (step, added)
    assert all(status is None for status, *_ in added.values()), added
    return before | added


WRITERS: dict[str, tuple[type[Case], Expected, frozenset[str]]] = {
    "profile-regeneration": (
        Profiles,
        _upgraded_profiles,
        frozenset({"rerun_profile_generation", "upgrade_all_profiles"}),
    ),
    "playbook-regeneration": (
        Playbooks,
        _v1_playbooks,
        frozenset({"rerun_playbook_generation", "upgrade_all_user_playbooks"}),
    ),
    "restore-profiles": (Restore, _restored, frozenset({"add_user_profile"})),
    "clear-user-data": (Clear, _cleared, frozenset({"clear_user_data"})),
    "manual-generation-sweep": (
        NewcomerSweep,
        _swept,
        frozenset({"manual_profile_generation"}),
    ),
    "prompt-change": (
        PromptCheck,
        _v1_playbooks,
        frozenset(
            {"set_config", "update_config", "rerun_profile_generation", "rerun_playbook_generation"}
        ),
    ),
}
"""Each writer: its case, the rows its result makes of the server's, and the routes it
writes to (the refused one must have sent none that the winner does not also send)."""
SET_UP_FIRST = "restore-profiles"
"""Its setup deletes a row, which the other writer's snapshot must already miss."""
IN_CI = {
    frozenset({"profile-regeneration", "clear-user-data"}),
    frozenset({"playbook-regeneration", "prompt-change"}),
    frozenset({"restore-profiles", "manual-generation-sweep"}),
}
"""The pairs `make test` runs: disjoint, so every writer wins or loses in CI; the other 12
are marked slow."""
PAIRS = [
    pytest.param(a, b, marks=() if {a, b} in IN_CI else pytest.mark.slow, id=f"{a}+{b}")
    for a, b in itertools.combinations(WRITERS, 2)
]


def run_pair(stack: LocalStack, proxy: FaultProxy, tmp_path: Path, names: tuple[str, str]) -> None:
    """Set both writers up, start them together, and check the refusal and every row by id
    (see the module's docstring)."""
    url = stack.url
    cases: dict[str, Case] = {}
    for name in sorted(names, key=lambda n: n != SET_UP_FIRST):
        cases[name] = WRITERS[name][0](lock_timeout_s=LOSER_WAIT_S)
        (tmp_path / name).mkdir()
        cases[name].setup(url, proxy.url, tmp_path / name)
    before = server_rows(url)
    runs = {n: (lambda c=c, n=n: c.run(proxy.url, tmp_path / n)) for n, c in cases.items()}
    states = start_together(proxy, runs)
    winner, loser = assert_one_wrote_the_other_was_refused(proxy, states)
    assert states[winner].is_completed(), states[winner].message
    cases[winner].check_done(url)
    after = server_rows(url)
    expected = WRITERS[winner][1](cases[winner], states[winner], before, after)
    differ = sorted(k for k in expected.keys() | after.keys() if expected.get(k) != after.get(k))
    assert not differ, f"not what {winner}'s run makes of the rows ({loser} lost): {differ[:10]}"


def start_together(proxy: FaultProxy, runs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """The hold set, then every run released by one barrier, each in a thread running a
    copy of this context; their final states by name."""
    barrier = threading.Barrier(len(runs) + 1)
    states: dict[str, Any] = {}

    def run(name: str) -> None:
        barrier.wait()
        states[name] = runs[name]()

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, name)) for name in runs
    ]
    for thread in threads:
        thread.start()
    proxy.clear()
    proxy.add(fault="delay", path="/", nth=1, delay_s=HOLD_S)
    barrier.wait(30)
    for thread in threads:
        thread.join(600)
    return states


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_two_writers_at_once_one_writes_the_other_wrote_nothing(
    request, stack: LocalStack, prefect_api, proxy: FaultProxy, tmp_path, first: str, second: str
):
    """On the freshly seeded server when a writer needs it (Case.fresh_seed), else as the
    last test left it if consistent; seeded again after a sweep's setup (its stored
    conversation would change every later rerun)."""
    fresh = any(WRITERS[n][0].fresh_seed for n in (first, second))
    request.getfixturevalue("seeded_stack" if fresh else "clean_stack")
    try:
        run_pair(stack, proxy, tmp_path, (first, second))
    finally:
        if "manual-generation-sweep" in (first, second):
            stack.restore(SEEDED)
    claim(PAIRS_CHECKED)
    claim(CHECKED_BY_ID)


def assert_one_wrote_the_other_was_refused(
    proxy: FaultProxy, states: dict[str, Any]
) -> tuple[str, str]:
    """Exactly one writer was refused by the lock, said so and that it wrote nothing, and
    the proxy saw none of the routes only it writes to; (winner, loser)."""
    refused = {n: s for n, s in states.items() if s.message and "holds its lock" in s.message}
    assert len(refused) == 1, {n: s.message for n, s in states.items()}
    (loser,) = refused
    (winner,) = set(states) - refused.keys()
    message = refused[loser].message
    assert f"'{lock_name(proxy.url)}'" in message and "Nothing was written" in message, message
    assert states[winner].message and "holds its lock" not in states[winner].message
    sent = {r.path.split("?")[0].rsplit("/", 1)[-1] for r in proxy.records if r.method != "GET"}
    only_loser = WRITERS[loser][2] - WRITERS[winner][2]
    assert not sent & only_loser, (loser, sent & only_loser)
    return winner, loser
