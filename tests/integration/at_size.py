"""The production-size server of the at-size tests (test_pipeline_at_size*.py): 25,000
ARCHIVED rows, half of them sharing one second (as after a large upgrade), and 25,000 CURRENT
rows of 5,000 users, some of whom have a stored conversation, so a rerun regenerates their
rows through the gate and the upgrade. The slow cases each have a file of their own, so
`make test-all`'s two workers (a test file at a time) can run them side by side."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.kinds import PROFILE_KEYS, PROFILES, comparable
from core.outcome import Decision
from core.touched import read_touched_ids
from flows.profile_regeneration import profile_regeneration
from local_stack.bulk_seed import ConversationSeed, ProfileSeed, SeedResult
from local_stack.stack import LocalStack
from tests.conftest import SEEDED
from tests.reliability.helpers import assert_rows_as_the_run_says, kind_rows

ARCHIVED = 25_000
SAME_SECOND = 12_000
CURRENT = 25_000
CURRENT_USERS = 5_000
"""5 CURRENT rows a user: the stand-in learns at most 5 facts from one conversation."""
TALKING = 100
"""Users with a stored conversation in CI: the rerun regenerates their rows. The slow case
takes SLOW_TALKING (issue 20 asks for 1,000); the rerun costs the server ~1 CPU-second a
user at this size (an FTS search over every row sharing a word, for each new row): the
1,000-user case took 678 s in `make test-all` (docs/reliability.md)."""
SLOW_TALKING = 1_000
SLOW_TALKING_TIMEOUT_S = 3600
LARGE = "large"
RUN_TIMEOUT_S = 1800


@contextmanager
def seeded_at_size(stack: LocalStack, talking: int, name: str) -> Iterator[SeedResult]:
    """The seeded users plus 25,000 ARCHIVED rows (12,000 in one second), 25,000 CURRENT
    rows and a conversation behind the CURRENT rows of `talking` users, snapshotted as
    `name`; the seeded state is put back after."""
    current = ProfileSeed("current", CURRENT, users=CURRENT_USERS)
    try:
        stack.restore(SEEDED)
        result = stack.bulk_seed(
            [
                ProfileSeed("archived", ARCHIVED, users=2_500, same_second=SAME_SECOND),
                current,
                ConversationSeed(current, users=talking),
            ]
        )
        stack.snapshot(name)
        yield result
    finally:
        stack.restore(SEEDED)


def assert_nightly_regenerates_the_talking_users(
    url: str, seeded: SeedResult, tmp_path: Path
) -> None:
    """The nightly upgrades; by id: every talking user's old rows ARCHIVED, every other
    CURRENT row unchanged, CURRENT nothing else, every old ARCHIVED row deleted."""
    before = kind_rows(url, PROFILES)
    current_before = {r["profile_id"]: r for r in before["current"]}
    assert {r["profile_id"] for r in before["archived"]} == seeded.profile_ids("archived")
    assert seeded.profile_ids("current") <= set(current_before)
    talking = seeded.talking_users()

    state = profile_regeneration(reflexio_url=url, backup_dir=tmp_path, return_state=True)

    assert assert_rows_as_the_run_says(url, PROFILES, before, state) is Decision.UPGRADED
    outcome = state.result()
    touched = {k: set(v) for k, v in read_touched_ids(Path(outcome.touched.ids_file)).items()}
    after = {r["profile_id"]: r for r in kind_rows(url, PROFILES)["current"]}
    # Every talking user's rows were regenerated: new rows CURRENT, the old ones ARCHIVED.
    promoted_users = {after[i]["user_id"] for i in touched["promoted"]}
    assert talking <= promoted_users
    regenerated = {i for i, r in current_before.items() if r["user_id"] in promoted_users}
    assert touched["archived"] == regenerated
    # Every other CURRENT row is CURRENT, unchanged; CURRENT holds nothing else.
    spared = {i: r for i, r in current_before.items() if i not in regenerated}
    assert len(spared) >= CURRENT - len(talking) * CURRENT // CURRENT_USERS
    assert comparable(list(spared.values()), PROFILE_KEYS) == comparable(
        [after[i] for i in spared], PROFILE_KEYS
    )
    assert set(after) == touched["promoted"] | set(spared)
    # Every old ARCHIVED row was deleted (H1), and is in the backup (checked above by id).
    assert touched["deleted"] == seeded.profile_ids("archived")


SLOW_TIMEOUT_S = 3600
"""Re-creating 25,000 rows took the server about 33 minutes in `make test-all` on 2026-12-07
(about 80 ms a row at load 2-6; it embeds each one): the 40 minutes allowed before left
that test 3 minutes to spare."""
