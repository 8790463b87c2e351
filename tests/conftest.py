"""Shared fixtures: the real Reflexio server with the stand-in LLM, and a Prefect test API.

The stack starts once per session (~1 min the first time on a machine, to build the cached
server venv; ~5 s after). Seeded data is snapshotted so a test that needs a known state can
ask for ``seeded_stack``, which restores it (~5 s) instead of seeding again (~20 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Unit tests on the ephemeral API: its start (Prefect's default wait: 20 s) timed out once in
# a clean-clone CI rehearsal at load 6, failing a test's setup.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from local_stack.seed import seed
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings

pytest_plugins = ["pytester", "tests.tally"]
"""pytester (tests of the test tooling) and the reliability tally (claims count only for
tests that pass; bars for `make test-all`)."""

SEEDED = "seeded"
SEEDED_COUNTS: dict[str, int] = {}
"""Profiles per status right after seeding (tests that need the seeded state compare)."""
SEEDED_CONFIG: dict[str, object] = {}
"""The server's config right after seeding (a test that changed it and did not put it back
would change what every later rerun produces)."""


def profile_counts(url: str) -> dict[str, int]:
    """Profiles per status on the server, from its statistics."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        stats = client.get_profile_statistics()
    return {
        "current": stats.current_count,
        "pending": stats.pending_count,
        "archived": stats.archived_count,
    }


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The session's Reflexio server (rate limits off) and stand-in LLM, seeded once per
    test run: under pytest-xdist the first worker seeds and exports the seeded data, the
    others import it (~5 s instead of ~1 min of seeding each, on the same cores).

    Its server calls the LLM in its own process: the child it forks per chat call (a guard
    against hung providers, which the stand-in never is) made a seeded regeneration about
    3x slower (a test's run ~23 s against ~7 s at load 2.5), and a fork beside a live
    request can hang (H18). The suite's other servers keep the server's own path (in CI:
    test_secrets' regenerations, the golden checks' scratch servers, among others)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    shared = tmp_path_factory.getbasetemp().parent / f"seeded-{run}" if worker and run else None
    state = tmp_path_factory.mktemp("reflexio")
    with LocalStack(state_dir=state, preload=True, llm_calls_in_process=True) as running:
        with _exclusive(shared.with_suffix(".lock")) if shared else contextlib.nullcontext():
            if shared is not None and shared.exists():
                running.import_snapshot(SEEDED, shared)
            else:
                seed(running.url, sources=("chat", "email"))
                running.snapshot(SEEDED)
                if shared is not None:
                    running.export_snapshot(SEEDED, shared)
        SEEDED_COUNTS.update(profile_counts(running.url))
        with ReflexioClient(ReflexioSettings(url=running.url)) as client:
            SEEDED_CONFIG.update(client.get_config())
        yield running


@pytest.fixture
def seeded_stack(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack put back to its freshly seeded state, with the stand-in answering normally.
    A stall the test set is cleared after it: the stall flag stops every writer, and the
    tests that take the session stack as it is (`stack`) do not restore it."""
    stack.restore(SEEDED)
    yield stack
    stack.clear_stall()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A throwaway Prefect API for flow tests (about 12 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def no_run_journal_left(request: pytest.FixtureRequest) -> None:
    """Before a test that uses the Prefect API: forget the run journals earlier tests left
    (a run that ended in error or was killed keeps one, by design, for the next writer of
    that server; the tests reset the server themselves, and a proxy's URL can repeat)."""
    if "prefect_api" not in request.fixturenames:
        return
    request.getfixturevalue("prefect_api")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for document in client.read_block_documents(include_secrets=False):
            if (document.name or "").startswith("reflexio-run-journal-"):
                client.delete_block_document(document.id)
