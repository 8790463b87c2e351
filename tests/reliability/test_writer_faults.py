"""Faults on the call points of every writer: both regenerations, restore, clear-user-data,
the sweep and the prompt check.

Each case injects one fault class at one call point (a read the writer makes under the lock,
or its write) and runs the writer against the real server through the proxy. Whatever the
run ends in, the server's rows must be what the run says: a regeneration's rows are checked
by id against what its outcome and touched-ids file name (helpers.assert_rows_as_the_run_says);
another writer that completed has done all of its work (checked by id); a run that failed
says so without a traceback, and the same writer run again without faults completes it.
test_faults.py adds combined faults on the profile regeneration (several per run, the
upgrade's ambiguous answers, rollbacks). Every call point also runs once on the
production-shaped server (conftest.production: 25,000 rows per status). CI runs one case
per writer; `make test-all` all 98.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from core.backup import BackupWriter
from core.kinds import PROFILE_KEYS, PROFILES, Kind, comparable, user_playbooks
from core.outcome import Decision
from flows.clear_users import clear_users
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from flows.prompt_change import prompt_change
from flows.restore import restore_profiles
from flows.sweep import manual_sweep
from local_stack.fault_proxy import FaultProxy
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.check_record import load_record
from tasks.journal import load_journal
from tests.integration.pipeline_helpers import config_bytes, profile_rows
from tests.integration.test_prompt_change import CANDIDATE
from tests.reliability.helpers import (
    CHECKED_BY_ID,
    KindRows,
    assert_rows_as_the_run_says,
    count_faults,
    everyones_rows,
    fault_label,
    fired_faults,
    kind_rows,
)
from tests.reliability.test_crash import REPAIRED
from tests.tally import claim

pytestmark = pytest.mark.reliability

READ_TIMEOUT_S = 4.0

FAULTS: dict[str, dict[str, Any]] = {
    "reset": {"fault": "reset"},
    "503 x2": {"fault": "status", "status": 503, "times": 2},
    "429 + Retry-After": {"fault": "status", "status": 429, "headers": {"Retry-After": "1"}},
    "timeout": {"fault": "timeout", "hold_s": READ_TIMEOUT_S + 2},
    "truncated body": {"fault": "truncate"},
    "HTML page": {"fault": "html"},
    "reset after apply": {"fault": "reset", "forward": True},
    "timeout after apply": {"fault": "timeout", "forward": True, "hold_s": READ_TIMEOUT_S + 2},
}
AFTER_APPLY = ("reset after apply", "timeout after apply", "truncated body")
"""The faults whose request the server applied before the answer was lost: the dangerous
case for a write. Crossed with the write call points only (a read applied twice is a read)."""
IN_CI = {
    ("profiles: upgrade", "reset"),
    ("playbooks: rerun", "503 x2"),
    ("prompt check: config write", "HTML page"),
    ("restore: re-create", "reset after apply"),
    ("clear-user-data: inventory", "timeout"),
    ("clear-user-data: erase", "truncated body"),
    ("sweep: snapshot", "429 + Retry-After"),
    ("sweep: manual generation", "timeout after apply"),
}
"""What CI runs: one call point of each writer and each fault class once, on the cheapest
points (about 20-50 s each); `make test-all` every class at every point, the undo paths
(the rollback's downgrade, delete and re-create, the prompt check's config restore: 1.5-3
min each under load) included."""


@pytest.fixture(autouse=True)
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_READ_TIMEOUT_S", str(READ_TIMEOUT_S))


class Case:
    """One writer: set the server up, run it, and check the rows are what it says."""

    fresh_seed = False
    """Start from the freshly seeded server, not just a consistent one: after a playbook
    rerun whose candidate was not kept, the next one on that server generates nothing with
    the stand-in (a gate FAIL, nothing lost; see docs/reliability.md)."""

    first_rules: tuple[dict[str, Any], ...] = ()
    """Proxy rules of the first run besides the fault (e.g. what makes it roll back)."""

    def __init__(self, **flow_params: Any) -> None:
        self.flow_params = flow_params
        """Parameters every run of this case adds (test_writer_pairs: a short lock wait)."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        """Bring the server to where the writer has work to do."""

    def run(self, proxy_url: str, work: Path) -> Any:
        raise NotImplementedError

    def check_done(self, url: str) -> None:
        raise NotImplementedError

    def check_failed(self, url: str, state: Any) -> None:
        """What a run that failed must have left (by default: nothing to check here)."""


class Regeneration(Case):
    """A regeneration of one kind: its rows checked by id against what each run says; a
    failed run must have changed nothing, and the run again must upgrade."""

    kind: Kind

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.before: KindRows = kind_rows(url, self.kind)
        self.last: Any = None

    def check_failed(self, url: str, state: Any) -> None:
        assert assert_rows_as_the_run_says(url, self.kind, self.before, state) is not (
            Decision.UPGRADED
        )
        self.before = kind_rows(url, self.kind)  # playbooks: re-created rows have new ids

    def check_done(self, url: str) -> None:
        decision = assert_rows_as_the_run_says(url, self.kind, self.before, self.last)
        assert decision is Decision.UPGRADED, self.last.message


class Profiles(Regeneration):
    kind = PROFILES

    def run(self, proxy_url: str, work: Path) -> Any:
        params = dict(
            reflexio_url=proxy_url,
            backup_dir=str(work),
            notification_block="none",
            **self.flow_params,
        )
        self.last = profile_regeneration(**params, return_state=True)
        return self.last


NONSENSE_VERIFICATION = {
    "fault": "body",
    "path": "get_profile_statistics",
    "nth": 5,  # 1-2: the backup read, 3-4: the candidate read, 5: verification
    "transform": lambda body: {**body, "current_count": "many"},
}
"""The verification read answers wrong types: the run rolls its upgrade back."""


class RolledBack(Profiles):
    """A profile regeneration whose verification read answers nonsense, so it rolls back:
    the downgrade, the delete of the rows it promoted, the re-create of the old ARCHIVED rows
    its upgrade deleted (H1; three are added first). A fault on that undo path may leave it
    unfinished: then the run says the data differs and keeps its journal, and the run again
    repairs from the journal first (back to the rows of before), then upgrades."""

    first_rules = (NONSENSE_VERIFICATION,)
    left_journal = False

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        old = [
            {**row, "profile_id": f"old-{uuid4().hex}", "status": "archived"}
            for row in profile_rows(url, "current")[:3]
        ]
        with ReflexioClient(ReflexioSettings(url=url)) as client:
            client.add_user_profiles(old)
        self.proxy_url = proxy_url
        super().setup(url, proxy_url, work)

    def check_failed(self, url: str, state: Any) -> None:
        assert "rolled back" in state.message, state.message
        if "data equals the state before the upgrade" in state.message:
            super().check_failed(url, state)
            assert load_journal(self.proxy_url) is None
            return
        assert "DIFFERS" in state.message, state.message
        assert load_journal(self.proxy_url) is not None, "nothing left for the next writer"
        self.left_journal = True

    def check_done(self, url: str) -> None:
        super().check_done(url)  # by id against the rows before the rolled-back run
        if self.left_journal:
            assert self.last.message.startswith(REPAIRED), self.last.message


class Playbooks(Regeneration):
    """v1's playbooks; v2's rows must keep their ids."""

    fresh_seed = True
    kind = user_playbooks("v1")
    other = user_playbooks("v2")

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        super().setup(url, proxy_url, work)
        self.other_rows = kind_rows(url, self.other)

    def check_done(self, url: str) -> None:
        super().check_done(url)
        assert kind_rows(url, self.other) == self.other_rows

    def run(self, proxy_url: str, work: Path) -> Any:
        params = dict(
            reflexio_url=proxy_url,
            agent_version="v1",
            backup_dir=str(work),
            notification_block="none",
            **self.flow_params,
        )
        self.last = playbook_regeneration(**params, return_state=True)
        return self.last


class PromptCheck(Case):
    """A check of a candidate prompt for profiles and v1's playbooks, not promoted: after
    it, the config is the server's own again byte for byte, CURRENT and ARCHIVED rows of
    both kinds are as before, and no record of the check is left."""

    fresh_seed = True
    kinds = (PROFILES, user_playbooks("v1"))

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.config = config_bytes(url)
        self.before = {kind.name: kind_rows(url, kind) for kind in self.kinds}
        self.candidate = work / "candidate.yaml"
        self.candidate.write_text(CANDIDATE)
        self.proxy_url = proxy_url

    def run(self, proxy_url: str, work: Path) -> Any:
        params = dict(
            reflexio_url=proxy_url,
            candidate_config=self.candidate.read_text(),
            agent_version="v1",
            backup_dir=str(work / "backups"),
            notification_block="none",
            **self.flow_params,
        )
        return prompt_change(**params, return_state=True)

    def check_done(self, url: str) -> None:
        assert config_bytes(url) == self.config
        assert load_record(self.proxy_url) is None
        for kind in self.kinds:
            after, before = kind_rows(url, kind), self.before[kind.name]
            keys = PROFILE_KEYS if kind is PROFILES else ("user_id", "content", "status")
            for status in ("current", "archived"):
                assert comparable(after[status], keys) == comparable(before[status], keys)
            if kind is PROFILES:
                assert after["pending"] == []


class Restore(Case):
    """A backup of the rows, then one CURRENT row deleted: the restore re-creates it."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.rows = profile_rows(url, "current", "archived")
        with BackupWriter(work, "profiles", proxy_url, "faults-01") as writer:
            writer.write(self.rows)
        self.manifest = writer.info.manifest_path
        gone = next(r["profile_id"] for r in self.rows if r["status"] is None)
        with ReflexioClient(ReflexioSettings(url=url)) as client:
            client.delete_profiles([gone])

    def run(self, proxy_url: str, work: Path) -> Any:
        # A hand-made backup (no touched-ids file) that must bring back a row deleted
        # since: exactly the risk recreate_missing accepts.
        params = dict(
            reflexio_url=proxy_url,
            backup_file=self.manifest,
            records_dir=str(work),
            recreate_missing=True,
            assume_no_erasures=True,
            **self.flow_params,
        )
        return restore_profiles(**params, return_state=True)

    def check_done(self, url: str) -> None:
        now = profile_rows(url, "current", "archived")
        assert comparable(now, PROFILE_KEYS) == comparable(self.rows, PROFILE_KEYS)


class Clear(Case):
    """Erase one seeded user: nothing of theirs may remain, and every other user's profiles
    and playbooks are as before, by id (a clear that erased everyone fails here)."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.user = sorted({r["user_id"] for r in profile_rows(url, "current")})[0]
        self.others = {i: row for i, row in everyones_rows(url).items() if row[0] != self.user}
        assert self.others, "no other user's rows to check"

    def run(self, proxy_url: str, work: Path) -> Any:
        params = dict(
            reflexio_url=proxy_url,
            user_ids=[self.user],
            records_dir=str(work),
            **self.flow_params,
        )
        return clear_users(**params, return_state=True)

    def check_done(self, url: str) -> None:
        after = everyones_rows(url)
        left = [i for i, row in after.items() if row[0] == self.user]
        assert left == [], left
        assert {i: row for i, row in after.items() if row[0] != self.user} == self.others


class Sweep(Case):
    """One manual profile generation for chat: no row CURRENT before may be lost."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.before = {r["profile_id"] for r in profile_rows(url, "current")}

    def run(self, proxy_url: str, work: Path) -> Any:
        params = dict(
            reflexio_url=proxy_url,
            sources=["chat"],
            kinds=["profiles"],
            manual_calls_per_minute=120,
            **self.flow_params,
        )
        return manual_sweep(**params, return_state=True)

    def check_done(self, url: str) -> None:
        assert self.before <= {r["profile_id"] for r in profile_rows(url, "current")}


POINTS: dict[str, tuple[type[Case], dict[str, Any]]] = {
    "profiles: backup listing": (Profiles, {"path": "status_filter=archived", "method": "GET"}),
    "profiles: rerun": (Profiles, {"path": "rerun_profile_generation", "method": "POST"}),
    "profiles: upgrade": (Profiles, {"path": "upgrade_all_profiles", "method": "POST"}),
    "playbooks: listing": (Playbooks, {"path": "get_user_playbooks", "method": "POST"}),
    "playbooks: rerun": (Playbooks, {"path": "rerun_playbook_generation", "method": "POST"}),
    "playbooks: upgrade": (Playbooks, {"path": "upgrade_all_user_playbooks", "method": "POST"}),
    "prompt check: config write": (PromptCheck, {"path": "update_config", "method": "POST"}),
    "prompt check: rerun": (PromptCheck, {"path": "rerun_playbook_generation", "method": "POST"}),
    "prompt check: config restore": (PromptCheck, {"path": "set_config", "method": "POST"}),
    "restore: listing": (Restore, {"path": "status_filter=current", "method": "GET"}),
    "restore: re-create": (Restore, {"path": "add_user_profile", "method": "POST"}),
    "clear-user-data: inventory": (Clear, {"path": "get_all_profiles", "method": "GET"}),
    "clear-user-data: erase": (Clear, {"path": "clear_user_data", "method": "POST"}),
    "sweep: snapshot": (Sweep, {"path": "get_all_profiles", "method": "GET"}),
    "sweep: manual generation": (Sweep, {"path": "manual_profile_generation", "method": "POST"}),
    "profiles: downgrade": (RolledBack, {"path": "downgrade_all_profiles", "method": "POST"}),
    "profiles: rollback delete": (
        RolledBack,
        {"path": "delete_profiles_by_ids", "method": "DELETE"},
    ),
    "profiles: rollback re-create": (RolledBack, {"path": "add_user_profile", "method": "POST"}),
}
READS = {
    "profiles: backup listing",
    "playbooks: listing",
    "restore: listing",
    "clear-user-data: inventory",
    "sweep: snapshot",
}
"""The call points that only read; every other point is a write, which also takes the
faults that fire after the server applied it."""
UNDO = {point for point, (case, _) in POINTS.items() if case is RolledBack}
"""The rollback's calls: not run at production size, where a rollback re-creates 25,000
rows (15-33 min)."""
AT_SIZE_FAULT = "503 x2"
"""The fault every call point also gets on the production-shaped server (conftest.production):
a transient one, so no case there rolls back (re-creating 25,000 rows takes 15-33 min, H1)."""
CASES = [
    pytest.param(
        point,
        fault,
        "seeded_stack" if POINTS[point][0].fresh_seed else "clean_stack",
        marks=() if (point, fault) in IN_CI else pytest.mark.slow,
        id=f"{point}-{fault}",
    )
    for point in POINTS
    for fault in FAULTS
    if point not in READS or not FAULTS[fault].get("forward")
] + [
    pytest.param(
        point,
        AT_SIZE_FAULT,
        "production_stack",
        marks=[pytest.mark.slow, pytest.mark.timeout(1800)],
        id=f"{point}-{AT_SIZE_FAULT}-at-size",
    )
    for point in POINTS
    if point not in UNDO
]


@pytest.mark.parametrize(("point", "fault", "server"), CASES)
def test_a_fault_at_a_writers_call_point_leaves_the_rows_as_the_run_says(
    request, prefect_api, proxy: FaultProxy, tmp_path, point: str, fault: str, server: str
):
    """`server`: the seeded few-user server (as an earlier test left it if consistent, or
    freshly seeded), or the production-shaped one."""
    url = request.getfixturevalue(server).url
    make, where = POINTS[point]
    case = make()
    case.setup(url, proxy.url, tmp_path)
    for rule in case.first_rules:
        proxy.add(**rule)
    proxy.add(**FAULTS[fault], **where)
    state = case.run(proxy.url, tmp_path)
    label = fault_label(FAULTS[fault]["fault"], FAULTS[fault].get("forward", False))
    fired = [f for f in fired_faults(proxy) if f[0] == label]  # not the case's first_rules
    assert fired, f"the {fault} fault never fired at {point}"
    assert state.message and "Traceback" not in state.message, state.message
    if not state.is_completed():  # it said it failed: the same run again finishes the work
        case.check_failed(url, state)
        proxy.clear()
        again = case.run(proxy.url, tmp_path)
        assert again.is_completed(), (state.message, again.message)
    case.check_done(url)
    count_faults(fired)  # counted only once every check of the case held
    claim(CHECKED_BY_ID)


@pytest.mark.slow  # a check of the check, not of a writer
def test_the_check_by_id_catches_a_row_lost_behind_the_runs_back(
    clean_stack, prefect_api, tmp_path
):
    """The check every case above relies on fails when a row vanished that the run does not
    name: a CURRENT row of a user the upgrade spared, deleted after the run."""
    url = clean_stack.url
    case = Profiles()
    case.setup(url, url, tmp_path)
    params = dict(reflexio_url=url, backup_dir=str(tmp_path), sources=["chat"])
    state = profile_regeneration(**params, return_state=True)
    assert assert_rows_as_the_run_says(url, PROFILES, case.before, state) is Decision.UPGRADED
    current = kind_rows(url, PROFILES)["current"]
    spared = next(r["profile_id"] for r in current if r["source"] == "email")
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        client.delete_profiles([spared])
    with pytest.raises(AssertionError, match=f"CURRENT rows lost: \\['{spared}'\\]"):
        assert_rows_as_the_run_says(url, PROFILES, case.before, state)
