"""What the reliability tests check after every run: the server's data is consistent.

"Consistent" (issue 5): no PENDING rows are left, and CURRENT is either exactly the pre-run
CURRENT or the new generation (every pre-run CURRENT row archived, every user that had a
CURRENT profile still has one). Checked with listings, never with the server's reported
counts (H3).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.backup import open_backup
from core.kinds import PROFILE_KEYS, comparable
from reflexio_api import ReflexioClient, ReflexioSettings
from tests.integration.pipeline_helpers import profile_rows, run_backup

MEASURED: Counter[str] = Counter()
"""What this run of the suite proved, by category (printed at the end by conftest.py); a
test adds to it after its assertions passed, so the counts are of cases that held."""
CATEGORIES = (
    "fault x call point cases",
    "faults fired",
    "crash points recovered",
    "bad inputs refused, nothing written",
    "pairs of writers started at once",
    "runs scanned for secrets",
    "runs checked by id, nothing lost",
)

UPGRADE = "upgrade_all_profiles"
DOWNGRADE = "downgrade_all_profiles"


def rows(url: str, *statuses: str, api_key: str | None = None) -> list[dict[str, Any]]:
    """Profiles of these statuses, as dicts with `status` stamped."""
    return profile_rows(url, *statuses, api_key=api_key)


def operation_running(url: str) -> bool:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        status = client.get_operation_status("profile_generation")
    return status is not None and status.status == "in_progress"


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
        MEASURED["runs checked by id, nothing lost"] += 1
        return "unchanged"
    archived = rows(url, "archived", api_key=api_key)
    assert not ({r["profile_id"] for r in current} & before.ids), "half-applied: old and new mixed"
    assert {r["profile_id"] for r in archived} == before.ids, "old CURRENT not all archived"
    assert set(by_user(current)) >= set(by_user(before.current)), "a user lost every profile"
    MEASURED["runs checked by id, nothing lost"] += 1
    return "upgraded"


def assert_equals_backup(url: str, backup: list[dict[str, Any]]) -> None:
    now = rows(url, "current", "archived")
    assert comparable(now, PROFILE_KEYS) == comparable(backup, PROFILE_KEYS)
    MEASURED["runs checked by id, nothing lost"] += 1


def record_faults(proxy: Any) -> None:
    """Count the faults that fired through `proxy`, and its distinct fault x call points."""
    fired = [(r.fault, r.method, r.path.split("?")[0].rsplit("/", 1)[-1]) for r in proxy.faults()]
    MEASURED["faults fired"] += len(fired)
    MEASURED["fault x call point cases"] += len(set(fired))


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


def prefect_env() -> dict[str, str]:
    """Environment for a subprocess that must use this session's Prefect test API."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    return env
