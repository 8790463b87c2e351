"""A nightly on a busy server (issue 17, item 3; H16): 40,000 CURRENT and 40,000 ARCHIVED
profiles, and a user message a second with extraction throughout the run. With the old
proof ("the counts did not move while listed") every such nightly stopped; with a snapshot
plus a delta it must upgrade, keep every row users created meanwhile CURRENT, and check out
by id. Real server, real flows.

The users who talk are not the rerun's: they talk over the source "live" and the run
regenerates the source "chat" (the seeded users'), because a live extraction of a user the
rerun is working on can fail that user's rerun (tests/integration/test_pipeline_live.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.kinds import PROFILES
from core.outcome import Decision
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import ProfileSeed
from local_stack.seed import conversation_turns
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioError, ReflexioSettings
from tests.conftest import SEEDED
from tests.reliability.helpers import assert_rows_as_the_run_says, kind_rows

pytestmark = pytest.mark.integration

ROWS_PER_STATUS = 40_000
BULK_USERS = 4_000
DAY = 86_400
LIVE_USERS = 5
LIVE_SOURCE = "live"
LOCKED_RETRIES = 10
LINES = [
    "I just adopted a greyhound called Pixel.",
    "I switched to the night shift at the hospital this week.",
    "I am learning Portuguese before a trip to Lisbon.",
    "I started climbing twice a week after work.",
    "I moved my savings to an index fund.",
]


class UsersTalk:
    """A user message every second, learned by the server in the background (as a
    production client publishes), from users the run does not regenerate, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.sent: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.locked = 0
        self.thread = threading.Thread(target=self._talk, daemon=True)

    def _talk(self) -> None:
        with ReflexioClient(ReflexioSettings(url=self.url)) as client:
            n = 0
            while not self.stop.wait(max(0.0, n + 1 - (time.monotonic() - self.began))):
                user = f"live-user-{n % LIVE_USERS}"
                try:
                    self._publish(client, user, n)
                    self.sent.append((time.time(), user))
                except ReflexioError as exc:
                    self.failures.append(f"message {n} of {user}: {exc}")
                n += 1

    def _publish(self, client: ReflexioClient, user: str, n: int) -> None:
        """One message, sent again (as a production client would) while the server answers
        "database is locked": its SQLite write lock is held by a large write, e.g. the
        upgrade deleting 40,000 ARCHIVED rows in one transaction (seen in a CI rehearsal at
        load; counted in `locked`)."""
        for attempt in range(LOCKED_RETRIES + 1):
            try:
                client.publish_interaction(
                    user,
                    f"{user}-{n}",
                    LIVE_SOURCE,
                    "v1",
                    conversation_turns([LINES[n % len(LINES)]]),
                    force_extraction=True,
                )
                return
            except ReflexioError as exc:
                if "database is locked" not in str(exc) or attempt == LOCKED_RETRIES:
                    raise
                self.locked += 1
                time.sleep(2)

    def __enter__(self) -> UsersTalk:
        self.began = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def learned_rows(url: str) -> int:
    """Rows of the talking users, in any status."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        return sum(
            len(client.list_profiles(status, source=LIVE_SOURCE))  # type: ignore[arg-type]
            for status in ("current", "pending", "archived")
        )


def wait_until_learned(url: str, quiet_s: float = 15, limit_s: float = 240) -> None:
    """Wait until the server has learned what the users said (no new row for `quiet_s`)."""
    deadline, last, since = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = learned_rows(url)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(3)


@pytest.fixture
def busy_stack(stack: LocalStack):
    """The seeded users plus 40,000 CURRENT and 40,000 ARCHIVED rows of 4,000 more users
    (without interactions), stamped a day ago; seeded again afterwards."""
    stack.restore(SEEDED)
    day_ago = int(time.time()) - DAY
    stack.bulk_seed(
        [
            ProfileSeed(
                "current", ROWS_PER_STATUS, BULK_USERS, sources=("chat", "email"), base_time=day_ago
            ),
            ProfileSeed(
                "archived", ROWS_PER_STATUS, BULK_USERS, same_second=12_000, base_time=day_ago
            ),
        ]
    )
    yield stack
    stack.restore(SEEDED)


@pytest.mark.timeout(900)
def test_a_nightly_on_a_busy_server_upgrades_and_keeps_what_users_teach(
    busy_stack: LocalStack, prefect_api, tmp_path: Path
):
    url = busy_stack.url
    before = kind_rows(url, PROFILES)
    assert len(before["current"]) >= ROWS_PER_STATUS
    assert len(before["archived"]) >= ROWS_PER_STATUS
    params = dict(reflexio_url=url, backup_dir=tmp_path, sources=["chat"])
    began = time.time()
    with UsersTalk(url) as talk:
        time.sleep(2)  # the counts move from the run's first read on
        state = profile_regeneration(**params, return_state=True)
        ended = time.time()
    took = ended - began

    assert not talk.failures, talk.failures[:3]
    assert len(talk.sent) >= took - 5, (len(talk.sent), took)  # a message a second
    outcome = state.result(raise_on_failure=False)
    assert outcome.decision is Decision.UPGRADED, outcome.message
    assert_rows_as_the_run_says(url, PROFILES, before, state)

    # Every row the talking users were taught is CURRENT: none archived, none pending.
    wait_until_learned(url)
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        live = {
            status: client.list_profiles(status, source=LIVE_SOURCE)  # type: ignore[arg-type]
            for status in ("current", "pending", "archived")
        }
    assert live["archived"] == [] and live["pending"] == [], outcome.message
    during = [p for p in live["current"] if began <= p.last_modified_timestamp <= ended]
    assert during, "no row was learned while the run ran: the test proved nothing"
    assert {p.user_id for p in live["current"]} == {user for _, user in talk.sent}
