"""The reliability cases only a production-shaped server can show (conftest.production:
25,000 rows per status, several sources, two agent_versions), beside the fault x call point
matrix that also runs there (test_writer_faults.py, `-at-size` cases):

- a nightly run with faults on its reads, 25,000 stale PENDING rows to discard and users
  talking to the agent meanwhile;
- the same stale rows without leave to discard them: refused, nothing written;
- a run SIGKILLed half-way through its backup, finished by the next run;
- two writers started at once.

Every case checks the rows by id (helpers.assert_rows_as_the_run_says). All are slow:
`make test-all` runs them; CI runs the seeded ones and tests/integration/test_pipeline_at_size.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.kinds import PROFILES, user_playbooks
from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import SeedResult
from local_stack.fault_proxy import FaultProxy
from local_stack.stack import LocalStack
from tests.integration.pipeline_helpers import LIVE_LINES, users_talk_during_rerun
from tests.reliability.conftest import ROWS_PER_STATUS
from tests.reliability.helpers import (
    assert_rows_as_the_run_says,
    kind_rows,
    record_faults,
    release_lock,
)
from tests.reliability.test_crash import crash_at
from tests.reliability.test_writer_pairs import run_pair
from tests.tally import claim

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1800)]

READ_TIMEOUT_S = 8.0
"""The client's read timeout here: a page of 25,000 rows is read well within it."""


@pytest.fixture(autouse=True)
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_READ_TIMEOUT_S", str(READ_TIMEOUT_S))


def _params(url: str, work: Path, **extra) -> dict[str, Any]:
    return dict(reflexio_url=url, backup_dir=str(work), notification_block="none", **extra)


def test_a_nightly_run_with_faults_stale_rows_and_users_talking_loses_nothing(
    stale_production_stack: LocalStack,
    production: SeedResult,
    prefect_api,
    proxy: FaultProxy,
    tmp_path,
):
    url = stale_production_stack.url
    before = kind_rows(url, PROFILES)
    assert len(before["pending"]) >= ROWS_PER_STATUS
    playbooks_before = kind_rows(url, user_playbooks("v2"))
    proxy.add(fault="status", path="/stall_state", status=503, times=2)
    proxy.add(fault="reset", path="status_filter=pending")
    proxy.add(fault="truncate", path="status_filter=archived", nth=3)
    proxy.add(fault="timeout", path="get_profile_statistics", hold_s=READ_TIMEOUT_S + 2)
    proxy.add(fault="status", path="get_operation_status", status=429, headers={"Retry-After": "1"})
    stale_production_stack.llm.configure(delay_s=1.0)  # the rerun lasts while the users talk
    talked = users_talk_during_rerun(url, "profile_generation")

    params = _params(proxy.url, tmp_path, discard_stale_pending=True)
    state = profile_regeneration(**params, return_state=True)

    stale_production_stack.llm.configure(delay_s=0)
    assert talked.wait(60)
    assert state.is_completed(), state.message
    assert len(proxy.faults()) == 6, [r.fault for r in proxy.faults()]
    assert assert_rows_as_the_run_says(url, PROFILES, before, state) is Decision.UPGRADED
    after = kind_rows(url, PROFILES)
    current_users = {r["user_id"] for r in after["current"]}
    assert set(LIVE_LINES) <= current_users  # what users taught during the rerun is CURRENT
    spared = production.profile_ids("current")
    assert spared <= {r["profile_id"] for r in after["current"]}  # 25,000 rows, same ids
    assert kind_rows(url, user_playbooks("v2")) == playbooks_before
    record_faults(proxy)


def test_stale_rows_without_leave_to_discard_them_are_refused_and_nothing_written(
    stale_production_stack: LocalStack, prefect_api, proxy: FaultProxy, tmp_path
):
    url = stale_production_stack.url
    before = kind_rows(url, PROFILES)

    state = profile_regeneration(**_params(proxy.url, tmp_path), return_state=True)

    assert state.is_failed()
    assert "discard_stale_pending=True" in (state.message or ""), state.message
    assert [r for r in proxy.records if r.method != "GET"] == []
    assert assert_rows_as_the_run_says(url, PROFILES, before, state) is Decision.REFUSED
    assert kind_rows(url, PROFILES)["pending"] == before["pending"]
    claim("bad inputs sent to the server, nothing written")


def test_a_run_killed_mid_backup_is_finished_by_the_next_run(
    production_stack: LocalStack, prefect_api, proxy: FaultProxy, tmp_path
):
    url = production_stack.url
    before = kind_rows(url, PROFILES)

    crash_at(proxy, {"path": "status_filter=archived", "nth": 2}, tmp_path / "killed")

    assert kind_rows(url, PROFILES) == before  # killed before any write
    release_lock(proxy.url)  # the killed run's lease would hold the lock for 60 s more
    state = profile_regeneration(**_params(proxy.url, tmp_path / "next"), return_state=True)
    assert state.is_completed(), state.message
    assert assert_rows_as_the_run_says(url, PROFILES, before, state) is Decision.UPGRADED
    claim("crash points recovered")


def test_a_regeneration_and_clear_user_data_at_once(
    production_stack: LocalStack, prefect_api, proxy: FaultProxy, tmp_path
):
    run_pair(production_stack, proxy, tmp_path, ("profile-regeneration", "clear-user-data"))
    claim("pairs of writers started at once")
