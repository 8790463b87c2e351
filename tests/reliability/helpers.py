"""What the reliability tests check after every run: the server's data is consistent.

"Consistent" (issue 5): no PENDING rows are left, and CURRENT is either exactly the pre-run
CURRENT or the new generation (every pre-run CURRENT row archived, every user that had a
CURRENT profile still has one). Checked with listings, never with the server's reported
counts (H3).
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.backup import open_backup
from core.kinds import PLAYBOOK_KEYS, PROFILE_KEYS, STATUSES, Kind, comparable, row_status
from core.outcome import Decision, RegenerationOutcome
from core.touched import read_touched_ids
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import config_bytes, profile_rows, rows_by_id, run_backup
from tests.tally import CHECKED_BY_ID, claim

UPGRADE = "upgrade_all_profiles"
DOWNGRADE = "downgrade_all_profiles"


def rows(url: str, *statuses: str, api_key: str | None = None) -> list[dict[str, Any]]:
    """Profiles of these statuses, as dicts with `status` stamped."""
    return profile_rows(url, *statuses, api_key=api_key)


def operation_running(url: str) -> bool:
    """Whether a profile or playbook rerun is in progress on the server."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        services = ("profile_generation", "playbook_generation")
        statuses = [client.get_operation_status(service) for service in services]
    return any(s is not None and s.status == "in_progress" for s in statuses)


@dataclass
class Snapshot:
    """CURRENT and ARCHIVED rows before a run."""

    current: list[dict[str, Any]]
    archived: list[dict[str, Any]]

    @classmethod
    def take(cls, url: str, api_key: str | None = None) -> Snapshot:
        return cls(rows(url, "current", api_key=api_key), rows(url, "archived", api_key=api_key))

    @property
    def ids(self) -> set[str]:
        return {r["profile_id"] for r in self.current}


def by_user(profile_rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for row in profile_rows:
        out[str(row["user_id"])].append(row["content"])
    return {user: sorted(contents) for user, contents in out.items()}


def assert_consistent(url: str, before: Snapshot, api_key: str | None = None) -> str:
    """Raise AssertionError unless the data is consistent; return 'unchanged' or 'upgraded'."""
    pending = rows(url, "pending", api_key=api_key)
    assert pending == [], f"{len(pending)} PENDING row(s) left behind"
    current = rows(url, "current", api_key=api_key)
    if {r["profile_id"] for r in current} == before.ids:
        assert by_user(current) == by_user(before.current)
        claim(CHECKED_BY_ID)
        return "unchanged"
    archived = rows(url, "archived", api_key=api_key)
    assert not ({r["profile_id"] for r in current} & before.ids), "half-applied: old and new mixed"
    assert {r["profile_id"] for r in archived} == before.ids, "old CURRENT not all archived"
    assert set(by_user(current)) >= set(by_user(before.current)), "a user lost every profile"
    claim(CHECKED_BY_ID)
    return "upgraded"


KindRows = dict[str, list[dict[str, Any]]]
"""One kind's rows by status ('current', 'pending', 'archived')."""


def kind_rows(url: str, kind: Kind) -> KindRows:
    """Every row of `kind` (profiles, or one agent_version's user playbooks) by status;
    rows the server tombstoned (H6) are in none."""
    with ReflexioClient(ReflexioSettings(url=url, read_timeout_s=120)) as client:
        out: KindRows = {}
        for status in STATUSES:
            if kind.agent_version is None:
                listed = client.list_profiles(status)
            else:
                listed = client.list_user_playbooks(status, agent_version=kind.agent_version)
            dumped = (row.model_dump() for row in listed)
            out[status] = [{**r, "status": status} for r in dumped if row_status(r) == status]
        return out


Key = tuple[str, str]
"""A row on the server: ('profile', id), ('playbook <agent_version>', id) or ('config', '')."""
ServerRows = dict[Key, tuple[str | None, ...]]
"""Every row: (status, user_id, content); the config: (None, None, its bytes as text)."""


def server_rows(url: str) -> ServerRows:
    """Every profile and user playbook on the server (every live status) by id, and the
    config exactly as the server sends it."""
    out = _rows(url)
    out[("config", "")] = (None, None, config_bytes(url).decode())
    return out


def everyones_rows(url: str) -> dict[Key, tuple[str | None, ...]]:
    """Every profile and user playbook on the server, every status: (user, content) by
    `server_rows` key."""
    return {k: row[1:] for k, row in _rows(url).items()}


def _rows(url: str) -> ServerRows:
    """`server_rows` without the config."""
    out: ServerRows = {("profile", pid): row for pid, row in rows_by_id(url).items()}
    with ReflexioClient(ReflexioSettings(url=url, read_timeout_s=120)) as client:
        for p in client.list_user_playbooks():
            out[(f"playbook {p.agent_version}", str(p.user_playbook_id))] = (
                p.status,
                p.user_id,
                p.content,
            )
    return out


def assert_rows_as_the_run_says(url: str, kind: Kind, before: KindRows, state: Any) -> Decision:
    """Raise AssertionError unless the server's rows of `kind` are what the regeneration
    run that ended in `state` says, checked by id against `before` (its rows at the start):

    - upgraded: every promoted id is CURRENT, every archived id ARCHIVED, nothing is
      PENDING, every CURRENT row of before is still CURRENT unless the run names it archived
      or deleted, every row that left the server is named deleted, and every deleted row is
      in the run's backup (playbooks: rows the rerun tombstoned, H6, need only be in it);
    - anything else: CURRENT and ARCHIVED are the rows of before (by id for profiles; by
      content for playbooks, whose re-created rows get new ids) and no PENDING row of the
      run is left (playbooks keep theirs: H6).
    """
    outcome = state.result(raise_on_failure=False)
    assert isinstance(outcome, RegenerationOutcome), f"no outcome, the run raised: {outcome!r}"
    after = kind_rows(url, kind)

    def ids(rows: KindRows, *statuses: str) -> set[str]:
        return {kind.row_id(r) for s in statuses for r in rows[s]}

    if outcome.decision is Decision.UPGRADED:
        assert outcome.touched.ids_file, outcome.message
        touched = {k: set(v) for k, v in read_touched_ids(outcome.touched.ids_file).items()}
        assert touched["promoted"] <= ids(after, "current"), "a promoted row is not CURRENT"
        assert touched["archived"] <= ids(after, "archived"), "an archived row is not ARCHIVED"
        assert after["pending"] == [], f"{len(after['pending'])} row(s) left PENDING"
        backed = {str(i) for i in open_backup(outcome.backup).ids()} if outcome.backup else set()
        left_current = ids(before, "current") - ids(after, "current")
        unnamed = left_current - touched["archived"] - touched["deleted"]
        deleted = touched["deleted"] | touched["discarded_stale_pending"]
        unsaved = deleted - backed
        assert not unsaved, f"deleted rows not in the backup: {sorted(unsaved)[:5]}"
        gone = ids(before, *STATUSES) - ids(after, *STATUSES) - deleted
        if kind.rerun_tombstones_current:  # H6: tombstoned by the rerun, saved before it
            unnamed -= backed
            gone -= backed
        assert not unnamed, f"CURRENT rows lost: {sorted(unnamed)[:5]}"
        assert not gone, f"rows gone, not named deleted: {sorted(gone)[:5]}"
    else:
        keys = PROFILE_KEYS if kind.agent_version is None else PLAYBOOK_KEYS[1:]
        for status in ("current", "archived"):
            assert comparable(after[status], keys) == comparable(before[status], keys), (
                f"{status} rows changed by a run that says {outcome.decision}: {outcome.message}"
            )
        if kind.candidate_deleted_when_not_upgraded:
            assert ids(after, "pending") <= ids(before, "pending"), "the candidate was left"
    claim(CHECKED_BY_ID)
    return outcome.decision


def assert_equals_backup(url: str, backup: list[dict[str, Any]]) -> None:
    now = rows(url, "current", "archived")
    assert comparable(now, PROFILE_KEYS) == comparable(backup, PROFILE_KEYS)
    claim(CHECKED_BY_ID)


Fired = list[tuple[str | None, str, str]]


FORWARDED_ONLY_WHEN_ASKED = ("reset", "timeout", "status", "html")
"""Fault classes that reach the server only with the rule's `forward=True`."""


def fault_label(fault: str | None, forwarded: bool) -> str | None:
    """A fault class as the tally names it: "reset after apply" when the server had
    applied the request before the reset (the dangerous case for a write)."""
    return f"{fault} after apply" if forwarded and fault in FORWARDED_ONLY_WHEN_ASKED else fault


def fired_faults(proxy: Any) -> Fired:
    """The faults that fired through `proxy`: (fault, method, route) each."""
    return [
        (fault_label(r.fault, r.forwarded), r.method, r.path.split("?")[0].rsplit("/", 1)[-1])
        for r in proxy.faults()
    ]


def count_faults(fired: Fired) -> None:
    """Claim the faults and distinct fault x call points that fired (tests/tally.py: they
    count only if the test passes)."""
    claim("faults fired", len(fired))
    claim("fault x call point cases", len(set(fired)))


def record_faults(proxy: Any) -> None:
    """Claim the faults that fired through `proxy` (they count only if the test passes)."""
    count_faults(fired_faults(proxy))


def load_backup(directory: Path) -> tuple[Path, dict[str, Any]]:
    """The single finished backup a run wrote in `directory` (its manifest) and the CURRENT
    and ARCHIVED rows in it (what a restore puts back), read and checked to the end."""
    manifest = run_backup(directory)
    assert not list(directory.glob("*.partial")), "an unfinished backup was left behind"
    backed = [r for r in open_backup(manifest).iter_rows() if r.get("status") != "pending"]
    return manifest, {"rows": backed}


def release_lock(url: str) -> None:
    """Forget every holder of the server's lock: delete the limit (the next writer creates
    it again). A killed run's lease would free the slot only after 60 s; and zeroing
    `active_slots` instead would let that lease, when it expires, free a slot a later run
    holds. Also what a test calls first when its proxy may reuse an earlier proxy's port."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from deployments.catalogue import lock_name

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(lock_name(url))


def restore_dry_run(url: str, **params: Any) -> Any:
    """The state of a restore dry run (`params`: RestoreParams' fields): the cheapest next
    writer, which repairs whatever the run journal names first, then only reads."""
    from flows.restore import restore_profiles

    return restore_profiles(reflexio_url=url, dry_run=True, **params, return_state=True)


def prefect_env() -> dict[str, str]:
    """Environment for a subprocess that must use this session's Prefect test API."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    return env
