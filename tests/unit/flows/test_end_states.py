"""The names of the end states the automations tell apart (no Prefect API needed)."""

from __future__ import annotations

from core.outcome import Decision, RegenerationOutcome
from flows._common import final_state
from flows.lock import lock_busy
from flows.stall_watch import watch_settings
from reflexio_api import ReflexioSettings
from tasks.retry import worst_case_s


def _outcome(decision: Decision) -> RegenerationOutcome:
    return RegenerationOutcome(kind="profiles", server="s", decision=decision, message="m")


def test_a_dry_run_completes_under_its_own_name_so_it_starts_no_playbook_run():
    dry = final_state(_outcome(Decision.DRY_RUN))
    assert dry.is_completed() and dry.name == "DryRun"
    for decision in (Decision.UPGRADED, Decision.NOTHING_TO_DO):
        assert final_state(_outcome(decision)).name == "Completed"


def test_a_busy_lock_ends_failed_under_its_own_name():
    state = lock_busy("another writer holds it")
    assert state.is_failed() and state.name == "LockBusy"
    assert state.message == "another writer holds it"


def test_the_watch_uses_its_own_timeouts_unless_shorter_ones_are_set():
    assert watch_settings(ReflexioSettings()).read_timeout_s == 10
    assert watch_settings(ReflexioSettings(read_timeout_s=1)).read_timeout_s == 1
    assert watch_settings(ReflexioSettings(connect_timeout_s=30)).connect_timeout_s == 5


def test_worst_case_counts_every_attempt_sleep_and_delay():
    # 3 attempts of 10 s + 5 s of Retry-After each, delays of 2 and 4 s at 1.5x jitter
    assert worst_case_s(10, retries=2, retry_after_s=5) == 3 * 15 + 6 * 1.5
