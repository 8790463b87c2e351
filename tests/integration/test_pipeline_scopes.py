"""Scoped profile runs against the real server (issue 19): rows without a source after a
full run (H15), a time window after an upgrade, a run of two sources where one yields
little, and a rerun that reports no user processed. Checked by ids on the server.

The full run the H15 and window cases start from runs once per module (`after_full_run`,
a snapshot each test restores in about 5 s). The window and the no-user-processed cases
are slow (make test-all): unit tests cover them in CI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.outcome import Decision, RegenerationOutcome
from core.touched import read_touched_ids
from flows.profile_regeneration import profile_regeneration
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.models import OperationStatus
from tests.conftest import SEEDED
from tests.integration.pipeline_helpers import profile_rows, rows_by_id, saved_as

pytestmark = pytest.mark.integration

AFTER_FULL_RUN = "after-full-run"


def _current(url: str) -> dict[str, dict]:
    return {r["profile_id"]: r for r in profile_rows(url, "current")}


def _run(url: str, backups: Path, **params) -> RegenerationOutcome:
    state = profile_regeneration(
        reflexio_url=url, backup_dir=str(backups), **params, return_state=True
    )
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, RegenerationOutcome), state.message
    return outcome


@pytest.fixture(scope="module")
def after_full_run(
    stack: LocalStack, prefect_api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The seeded server after one full nightly: every CURRENT row without a source."""
    stack.restore(SEEDED)
    outcome = _run(stack.url, tmp_path_factory.mktemp("full-run"))
    assert outcome.decision is Decision.UPGRADED, outcome.message
    current = _current(stack.url)
    assert current and not any(r["source"] for r in current.values())  # H15
    with saved_as(stack, AFTER_FULL_RUN, SEEDED) as saved:
        yield saved


def _fresh(after_full_run: LocalStack) -> str:
    """The server as right after the full run; its URL."""
    after_full_run.restore(AFTER_FULL_RUN)
    return after_full_run.url


def _operation(url: str) -> OperationStatus | None:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return client.get_operation_status("profile_generation")


def test_a_source_run_after_a_full_run_is_refused_naming_the_rows(
    after_full_run: LocalStack, tmp_path: Path
):
    url = _fresh(after_full_run)
    before, operation = rows_by_id(url), _operation(url)
    outcome = _run(url, tmp_path, sources=["chat"])
    assert outcome.decision is Decision.REFUSED, outcome.message
    bare = len(_current(url))
    assert f"{bare} CURRENT profiles of" in outcome.message
    assert "carry no source" in outcome.message and "replace_unsourced_rows=true" in outcome.message
    assert "volume" not in outcome.message
    assert rows_by_id(url) == before  # nothing written
    assert _operation(url) == operation  # no rerun started


def test_replace_unsourced_rows_gates_against_them_and_the_upgrade_replaces_them(
    after_full_run: LocalStack, tmp_path: Path
):
    url = _fresh(after_full_run)
    bare = _current(url)
    outcome = _run(
        url,
        tmp_path,
        sources=["chat"],
        replace_unsourced_rows=True,
        # chat taught part of what the source-less rows hold, so fewer rows may come back:
        # this test is about what the upgrade replaces, not about that loss.
        gate_policy={"volume_ratio_fail_min": 0.0, "volume_ratio_warn_min": 0.0},
    )
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert outcome.gate is not None
    assert "carry no source (H15) and are replaced" in outcome.gate.markdown
    assert f"vs {len(bare)} baseline" in outcome.gate.sentence
    touched = read_touched_ids(Path(outcome.touched.ids_file or ""))
    promoted = set(touched["promoted"])
    after = _current(url)
    assert set(after) == promoted  # none of the source-less rows kept
    assert set(touched["archived"]) == set(bare)
    archived = {r["profile_id"] for r in profile_rows(url, "archived")}
    assert set(bare) <= archived
    assert all(r["source"] == "chat" for r in after.values())


@pytest.mark.slow
def test_a_time_window_after_an_upgrade_gates_against_the_rows_it_archives(
    after_full_run: LocalStack, tmp_path: Path
):
    """The full run's upgrade stamped every row: a window that ends before it holds the
    seeded interactions and no row, so the old baseline was empty (a first generation).
    Slow (make test-all); in CI: tests/unit/flows/test_engine_live.py's
    test_a_time_window_run_gates_against_every_row_the_upgrade_archives."""
    url = _fresh(after_full_run)
    before = _current(url)
    upgraded_at = min(r["last_modified_timestamp"] for r in before.values())
    end = datetime.fromtimestamp(upgraded_at - 1, UTC)
    outcome = _run(url, tmp_path, end_time=end)
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert outcome.gate is not None and "whatever its timestamp" in outcome.gate.markdown
    assert f"vs {len(before)} baseline" in outcome.gate.sentence  # every row it archives
    touched = read_touched_ids(Path(outcome.touched.ids_file or ""))
    assert set(_current(url)) == set(touched["promoted"])  # the old rows are not kept
    archived = {r["profile_id"] for r in profile_rows(url, "archived")}
    assert set(before) <= archived


def test_two_sources_where_email_yields_little_are_blocked(
    seeded_stack: LocalStack, prefect_api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The provider answers auth errors to the email rerun's calls about a share of the
    conversations (H2: the rerun still completes). Judged in total, as before issue 19,
    the run upgraded with a pass (measured: 24 candidate vs 24 baseline rows, the larger
    processed count found every user with rows), archiving the users' email rows."""
    url = seeded_stack.url
    original = ReflexioClient.rerun_profile_generation

    def failing_for_email(self: ReflexioClient, *args, source: str | None = None, **kwargs):
        if source == "email":
            seeded_stack.llm.configure(mode="auth_error", error_fraction=0.5)
        return original(self, *args, source=source, **kwargs)

    monkeypatch.setattr(ReflexioClient, "rerun_profile_generation", failing_for_email)
    before = rows_by_id(url)
    outcome = _run(url, tmp_path, sources=["chat", "email"])
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert outcome.gate is not None
    assert "rerun yield (email): " in outcome.gate.sentence  # a failing check, named
    assert {i: r for i, r in rows_by_id(url).items() if r[0] != "pending"} == before


@pytest.mark.slow
def test_a_rerun_that_reports_no_user_processed_is_blocked(
    seeded_stack: LocalStack, prefect_api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The server's status slot says 0 users processed for a rerun that wrote rows. Slow
    (make test-all); in CI: tests/unit/flows/test_engine_live.py's
    test_a_rerun_that_reports_no_user_processed_blocks and tests/unit/gate."""
    url = seeded_stack.url
    original = ReflexioClient.get_operation_status

    def none_processed(self: ReflexioClient, service_name):
        status = original(self, service_name)
        if status is None or status.status != "completed":
            return status
        return status.model_copy(update={"processed_users": 0})

    monkeypatch.setattr(ReflexioClient, "get_operation_status", none_processed)
    current = set(_current(url))
    outcome = _run(url, tmp_path)
    assert outcome.decision is Decision.GATE_BLOCKED, outcome.message
    assert outcome.gate is not None and "rerun yield: " in outcome.gate.sentence
    assert "reported 0 users processed" in outcome.message
    assert set(_current(url)) == current
