"""Faults on the call points of the other writers: restore, clear-user-data and the sweep.

Each case injects one fault class at one call point (a read the writer makes under the lock,
or its write) and runs the writer against the real server through the proxy. Whatever the
run ends in, the server's rows must be what the run says: a run that completed has done
all of its work (checked by id); a run that failed says so without a traceback, and the
same writer run again without faults completes it. The profile regeneration's call points
are in test_faults.py. CI runs one case per writer; `make test-all` all 36.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.backup import BackupWriter
from core.kinds import PROFILE_KEYS, comparable
from flows.clear_users import clear_users
from flows.params import ClearUsersParams, RestoreParams, SweepParams
from flows.restore import restore_profiles
from flows.sweep import manual_sweep
from local_stack.fault_proxy import FaultProxy
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import profile_rows
from tests.reliability.helpers import MEASURED, record_faults

pytestmark = pytest.mark.reliability

READ_TIMEOUT_S = 4.0

FAULTS: dict[str, dict[str, Any]] = {
    "reset": {"fault": "reset"},
    "503 x2": {"fault": "status", "status": 503, "times": 2},
    "429 + Retry-After": {"fault": "status", "status": 429, "headers": {"Retry-After": "1"}},
    "timeout": {"fault": "timeout", "hold_s": READ_TIMEOUT_S + 2},
    "truncated body": {"fault": "truncate"},
    "HTML page": {"fault": "html"},
}
IN_CI = {
    ("restore: re-create", "503 x2"),
    ("clear-user-data: erase", "503 x2"),
    ("sweep: snapshot", "503 x2"),
}
"""What CI runs: one call point of each writer; `make test-all` every class at every point."""


@pytest.fixture(autouse=True)
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_READ_TIMEOUT_S", str(READ_TIMEOUT_S))


def _ids(url: str) -> set[str]:
    return {r["profile_id"] for r in profile_rows(url, "current", "archived")}


class Case:
    """One writer: set the server up, run it, and check the rows are what it says."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        """Bring the server to where the writer has work to do."""

    def run(self, proxy_url: str, work: Path) -> Any:
        raise NotImplementedError

    def check_done(self, url: str) -> None:
        raise NotImplementedError


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
        params = RestoreParams(
            reflexio_url=proxy_url, backup_file=self.manifest, records_dir=str(work)
        )
        return restore_profiles(params, return_state=True)

    def check_done(self, url: str) -> None:
        now = profile_rows(url, "current", "archived")
        assert comparable(now, PROFILE_KEYS) == comparable(self.rows, PROFILE_KEYS)


class Clear(Case):
    """Erase one seeded user: nothing of theirs may remain."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.user = sorted({r["user_id"] for r in profile_rows(url, "current")})[0]

    def run(self, proxy_url: str, work: Path) -> Any:
        params = ClearUsersParams(
            reflexio_url=proxy_url, user_ids=[self.user], records_dir=str(work)
        )
        return clear_users(params, return_state=True)

    def check_done(self, url: str) -> None:
        rows = profile_rows(url, "current", "pending", "archived")
        left = [r for r in rows if r["user_id"] == self.user]
        assert left == [], left


class Sweep(Case):
    """One manual profile generation for chat: no row CURRENT before may be lost."""

    def setup(self, url: str, proxy_url: str, work: Path) -> None:
        self.before = {r["profile_id"] for r in profile_rows(url, "current")}

    def run(self, proxy_url: str, work: Path) -> Any:
        params = SweepParams(
            reflexio_url=proxy_url,
            sources=["chat"],
            kinds=["profiles"],
            manual_calls_per_minute=120,
        )
        return manual_sweep(params, return_state=True)

    def check_done(self, url: str) -> None:
        assert self.before <= {r["profile_id"] for r in profile_rows(url, "current")}


POINTS: dict[str, tuple[Callable[[], Case], dict[str, Any]]] = {
    "restore: listing": (Restore, {"path": "status_filter=current", "method": "GET"}),
    "restore: re-create": (Restore, {"path": "add_user_profile", "method": "POST"}),
    "clear-user-data: inventory": (Clear, {"path": "get_all_profiles", "method": "GET"}),
    "clear-user-data: erase": (Clear, {"path": "clear_user_data", "method": "POST"}),
    "sweep: snapshot": (Sweep, {"path": "get_all_profiles", "method": "GET"}),
    "sweep: manual generation": (Sweep, {"path": "manual_profile_generation", "method": "POST"}),
}
CASES = [
    pytest.param(
        point,
        fault,
        marks=() if (point, fault) in IN_CI else pytest.mark.slow,
        id=f"{point}-{fault}",
    )
    for point in POINTS
    for fault in FAULTS
]


@pytest.mark.parametrize(("point", "fault"), CASES)
def test_a_fault_at_a_writers_call_point_leaves_the_rows_as_the_run_says(
    clean_stack, prefect_api, proxy: FaultProxy, tmp_path, point: str, fault: str
):
    make, where = POINTS[point]
    case = make()
    case.setup(clean_stack.url, proxy.url, tmp_path)
    proxy.add(**FAULTS[fault], **where)
    state = case.run(proxy.url, tmp_path)
    assert proxy.faults(), f"the {fault} fault never fired at {point}"
    assert state.message and "Traceback" not in state.message, state.message
    if not state.is_completed():  # it said it failed: the same run again finishes the work
        record_faults(proxy)
        proxy.clear()
        again = case.run(proxy.url, tmp_path)
        assert again.is_completed(), (state.message, again.message)
    else:
        record_faults(proxy)
    case.check_done(clean_stack.url)
    MEASURED["runs checked by id, nothing lost"] += 1
