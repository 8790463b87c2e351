"""Regeneration on a live server (H14) and scoped runs, against the real Reflexio server:
what users teach while a rerun works stays CURRENT, with its ids, content and timestamps;
a single-source run leaves the user's other sources CURRENT; a playbook rerun that times
out is cancelled and every tombstoned CURRENT playbook is put back (H6)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.states import State

from core.backup import open_backup
from core.outcome import Decision
from core.touched import read_touched_ids
from flows.playbook_regeneration import playbook_regeneration
from flows.profile_regeneration import profile_regeneration
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.conftest import SEEDED
from tests.integration.pipeline_helpers import LIVE_LINES, profile_rows, users_talk_during_rerun

pytestmark = pytest.mark.integration


@pytest.fixture
def talking_stack(seeded_stack: LocalStack) -> Iterator[LocalStack]:
    """The seeded stack, seeded again after (the users' talk leaves rows). Its server
    calls the LLM in its own process (tests/conftest.py), which these tests need: the
    server forks a child per LLM call, and forked while the live extraction's threads run, a
    child can hang on a lock it inherited held; the user's rerun step then fails 290 s later
    with a "transient" error (H18: what failed these tests in CI). The fork is not what
    these tests are about."""
    yield seeded_stack
    seeded_stack.restore(SEEDED)


def _run_while_users_talk(
    stack: LocalStack,
    service: str,
    run: Callable[[], State],
    users: tuple[str, ...] = tuple(LIVE_LINES),
    delay_s: float = 1.0,
):
    """Run a regeneration (slowed so users can talk during its rerun) while `users` talk to
    the agent; its outcome, which must be an upgrade."""
    # Every LLM call is slowed: the rerun makes about 3 calls for each of 6 users, the two
    # users' conversations 2 each, so they are learned well before the rerun ends (at 0.4 s
    # a call, on a loaded machine, the talk once ended after the run's last read).
    stack.llm.configure(delay_s=delay_s)
    published = users_talk_during_rerun(stack.url, service, users)
    state = run()
    stack.llm.configure(delay_s=0)
    assert published.wait(60)
    outcome = state.result(raise_on_failure=False)
    assert outcome.decision is Decision.UPGRADED, outcome.message
    return outcome


def _current(url: str) -> dict[str, dict]:
    return {r["profile_id"]: r for r in profile_rows(url, "current")}


def test_profiles_users_teach_during_the_rerun_stay_current(
    talking_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = talking_stack.url
    before = _current(url)
    params = dict(reflexio_url=url, backup_dir=tmp_path, only_affected_users=False)
    outcome = _run_while_users_talk(
        talking_stack,
        "profile_generation",
        lambda: profile_regeneration(**params, return_state=True),
    )

    after = _current(url)
    promoted = set(read_touched_ids(Path(outcome.touched.ids_file or ""))["promoted"])
    live = {i: r for i, r in after.items() if i not in before and i not in promoted}
    assert {r["user_id"] for r in live.values()} == set(LIVE_LINES)  # both users' new rows
    saved = open_backup(Path(outcome.touched.live_file or "")).iter_rows()
    saved_current = {r["profile_id"]: r for r in saved if r["status"] is None}
    assert saved_current  # learned during the rerun: saved before the upgrade archived them
    for profile_id, row in saved_current.items():  # CURRENT again, unchanged
        assert after[profile_id]["content"] == row["content"]
        assert after[profile_id]["last_modified_timestamp"] == row["last_modified_timestamp"]
    assert outcome.touched.kept_current == len(saved_current)
    assert "Kept CURRENT" in outcome.message  # the summary names the kept rows


def test_a_single_source_run_keeps_the_other_source_current(
    seeded_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = seeded_stack.url
    email = {i: r for i, r in _current(url).items() if r["source"] == "email"}
    assert email, "the seed publishes every user over chat and email"
    state = profile_regeneration(
        reflexio_url=url,
        backup_dir=tmp_path,
        sources=["chat"],
        return_state=True,
    )
    outcome = state.result(raise_on_failure=False)
    assert outcome.decision is Decision.UPGRADED, outcome.message
    after = _current(url)
    assert set(email) <= set(after)  # same ids, still CURRENT
    for profile_id, row in email.items():
        assert after[profile_id]["content"] == row["content"]
    assert outcome.touched.kept_current == len(email)
    assert all(r["source"] == "chat" for i, r in after.items() if i not in email)


def _playbooks(url: str) -> list[dict]:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return [p.model_dump() for p in client.list_user_playbooks(agent_version="v1")]


def test_a_playbook_rerun_that_times_out_puts_tombstoned_rows_back(
    seeded_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = seeded_stack.url
    before = {(r["user_id"], r["content"]) for r in _playbooks(url) if r["status"] is None}
    seeded_stack.llm.configure(delay_s=0.5)
    state = playbook_regeneration(
        reflexio_url=url,
        backup_dir=tmp_path,
        operation_timeout_s=4,
        return_state=True,
    )
    seeded_stack.llm.configure(delay_s=0)
    outcome = state.result(raise_on_failure=False)
    assert outcome.decision is Decision.GENERATION_FAILED, outcome.message
    assert "did not finish within 4 s" in outcome.message
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        assert client.get_operation_status("playbook_generation").status != "in_progress"
    now = {(r["user_id"], r["content"]) for r in _playbooks(url) if r["status"] is None}
    assert before <= now  # every CURRENT playbook is CURRENT again (new ids for the merged)
    assert "discard_stale_pending" not in outcome.message


def test_playbooks_users_teach_during_the_rerun_stay_current(
    talking_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = talking_stack.url
    params = dict(reflexio_url=url, backup_dir=tmp_path, aggregate=False)
    # Only the new user talks: a live playbook extraction of a user the rerun is working
    # on at that moment fails that user's rerun (observed on 0.2.32), which is not what
    # this test is about. Profiles take both users (above).
    outcome = _run_while_users_talk(
        talking_stack,
        "playbook_generation",
        lambda: playbook_regeneration(**params, return_state=True),
        users=("newcomer",),
        delay_s=0.4,
    )
    saved = open_backup(Path(outcome.touched.live_file or "")).iter_rows()
    live = {(r["user_id"], r["content"]) for r in saved if r["status"] is None}
    assert {user for user, _ in live} == {"newcomer"}  # learned during the rerun
    now = {(r["user_id"], r["content"]) for r in _playbooks(url) if r["status"] is None}
    assert live <= now  # CURRENT again (as new rows: the server assigns playbook ids)
    assert outcome.touched.kept_current == len(live)
    assert "new rows" in outcome.message
