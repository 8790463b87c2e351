"""Restore flow on the real server.

1. A backup taken by hand before the regeneration, in the current format (v2: manifest and
   gzip JSON Lines) and as an old v1 document, brings CURRENT and ARCHIVED back exactly with
   delete_newer (no touched-ids file: the run's promotions count as newer).
2. After a regeneration that upgraded, rows learned since and a user erased with the
   clear-user-data flow: the default restore undoes the run and keeps the newer rows and the
   erasure; delete_newer deletes the newer rows; the dry runs write nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.backup import V1_FORMAT, BackupWriter, open_backup
from core.erasures import record_erasures
from core.identity import server_key
from core.kinds import PROFILE_KEYS, comparable
from core.touched import read_touched_ids
from flows.clear_users import clear_users
from flows.params import ClearUsersParams, RegenerationParams, RestoreParams
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from local_stack.bulk_seed import ProfileSeed
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.paging import PAGE_SIZE
from tests.integration.pipeline_helpers import profile_rows, run_backup

pytestmark = pytest.mark.integration

RUN_ID = "00000000-test-restore"


def _v2_backup(directory: Path, url: str, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """A v2 backup written in pages of 7 rows; returns (manifest, data file)."""
    with BackupWriter(directory, "profiles", url, RUN_ID) as writer:
        for start in range(0, len(rows), 7):
            writer.write(rows[start : start + 7])
    return writer.info.manifest_path, writer.info.data_path


def _v1_backup(directory: Path, url: str, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """A v1 document as the pipelines wrote them before v2; the same file twice."""
    directory.mkdir(parents=True)
    path = directory / "profiles-v1.json"
    document = {
        "format": V1_FORMAT,
        "kind": "profiles",
        "server": server_key(url),
        "agent_version": None,
        "created_at": datetime.now(UTC).isoformat(),
        "flow_run_id": RUN_ID,
        "counts": dict(Counter(str(r.get("status") or "current") for r in rows)),
        "rows": rows,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    return path, path


@pytest.mark.parametrize("write_backup", [_v2_backup, _v1_backup], ids=["v2", "v1"])
def test_restore_brings_back_the_backed_up_rows(seeded_stack, prefect_api, tmp_path, write_backup):
    url = seeded_stack.url
    before = profile_rows(url, "current", "archived")
    backup_file, dry_run_file = write_backup(tmp_path / "by-hand", url, before)

    state = profile_regeneration(
        RegenerationParams(reflexio_url=url, backup_dir=tmp_path / "regen"), return_state=True
    )
    assert state.is_completed(), state.message
    regen_backup = run_backup(tmp_path / "regen")
    backed_up = list(open_backup(regen_backup).iter_rows())
    assert comparable(backed_up, PROFILE_KEYS) == comparable(before, PROFILE_KEYS)
    upgraded = profile_rows(url, "current", "archived")
    assert comparable(upgraded, PROFILE_KEYS) != comparable(before, PROFILE_KEYS)

    # A hand-made backup has no touched-ids file: the rows the run promoted cannot be told
    # from rows learned since, so only delete_newer brings the backup back exactly.
    dry = restore_profiles(
        RestoreParams(backup_file=dry_run_file, reflexio_url=url, dry_run=True), return_state=True
    )
    assert dry.is_completed() and "Dry run, nothing written" in dry.message, dry.message
    promoted = {r["profile_id"] for r in upgraded} - {r["profile_id"] for r in before}
    assert dry.result()["newer"] == len(promoted) > 0
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        upgraded, PROFILE_KEYS
    )

    done = restore_profiles(
        RestoreParams(backup_file=backup_file, reflexio_url=url, delete_newer=True),
        return_state=True,
    )
    assert done.is_completed(), done.message
    assert "checked by id" in done.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        before, PROFILE_KEYS
    )

    again = restore_profiles(
        RestoreParams(backup_file=regen_backup, reflexio_url=url, dry_run=True),
        return_state=True,
    )
    assert again.message == (
        "Dry run, nothing written; would re-create 0, re-status 0, delete 0 promoted by the "
        "backed-up run; 0 learned since the backup kept (delete_newer=True deletes them)."
    )


Rows = dict[str, tuple[str | None, str, str]]


def _rows_by_id(url: str) -> Rows:
    """Every profile on the server, every status: id -> (status, user, content)."""
    return {
        r["profile_id"]: (r["status"], r["user_id"], r["content"])
        for r in profile_rows(url, "current", "pending", "archived")
    }


def _learned_since(url: str) -> set[str]:
    """Rows added after the backup, as an import would: one for a known user, one new."""
    rows = [
        {
            "profile_id": f"since-{user}",
            "user_id": user,
            "content": f"{user} learned this after the backup",
            "last_modified_timestamp": int(datetime.now(UTC).timestamp()),
            "generated_from_request_id": f"since-{user}",
            "source": "chat",
        }
        for user in ("alice", "gina")
    ]
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        client.add_user_profiles(rows)
    return {r["profile_id"] for r in rows}


NEWER_BULK = 5_100
"""Rows learned since the backup: more than one listing page (reflexio_api.paging)."""


def test_default_restore_keeps_newer_rows_and_erased_users_erased(
    seeded_stack, prefect_api, tmp_path
):
    url, server = seeded_stack.url, server_key(seeded_stack.url)
    assert NEWER_BULK > PAGE_SIZE
    old = seeded_stack.bulk_seed([ProfileSeed("archived", 60, users=6, id_prefix="old")])
    # bob was erased long before the backup and learned again since: restored normally.
    record_erasures(tmp_path, server, ["bob"], datetime.now(UTC) - timedelta(days=1))
    before = _rows_by_id(url)

    regen = profile_regeneration(
        RegenerationParams(reflexio_url=url, backup_dir=tmp_path / "regen"), return_state=True
    )
    assert regen.is_completed(), regen.message
    manifest = Path(regen.result().backup)
    touched = {k: set(v) for k, v in read_touched_ids(regen.result().touched.ids_file).items()}
    assert touched["deleted"] >= old.profile_ids("archived")
    assert touched["promoted"] and touched["archived"]

    newer = _learned_since(url)
    newer |= set(
        seeded_stack.bulk_seed(
            [ProfileSeed("current", NEWER_BULK, users=40, id_prefix="late")]
        ).profile_ids("current")
    )
    erased = clear_users(
        ClearUsersParams(user_ids=["carol"], reflexio_url=url, records_dir=tmp_path),
        return_state=True,
    )
    assert erased.is_completed(), erased.message
    carol = {pid for pid, (_, user, _) in before.items() if user == "carol"}
    bob = {pid for pid, (_, user, _) in before.items() if user == "bob"}
    assert carol and bob and not carol & touched["deleted"]
    now = _rows_by_id(url)
    undo = touched["promoted"] & now.keys()
    assert undo and not {p for p, (_, u, _) in now.items() if u == "carol"}

    def restore(**params):
        state = restore_profiles(
            RestoreParams(backup_file=manifest, reflexio_url=url, records_dir=tmp_path, **params),
            return_state=True,
        )
        assert state.is_completed(), state.message
        return state

    dry = restore(dry_run=True)
    assert dry.result() == {
        "re-create": len(touched["deleted"]),
        "re-status": len(touched["archived"] - carol),
        "undo promoted": len(undo),
        "newer": len(newer),
        "kept changed": 0,
        "erased rows": len(carol),
        "erased users": 1,
        "pending left": 0,
    }
    assert "(carol)" in dry.message and f"{len(newer)} learned since the backup kept" in dry.message
    assert _rows_by_id(url) == now, "a dry run writes nothing"

    done = restore()
    after = _rows_by_id(url)
    backed_up = {pid: row for pid, row in before.items() if pid not in carol}
    assert {pid: after.get(pid) for pid in backed_up} == backed_up, "the backup is back"
    assert bob <= after.keys()
    assert not undo & after.keys(), "the run's promoted rows are gone"
    assert {pid: after.get(pid) for pid in newer} == {pid: now[pid] for pid in newer}
    assert not carol & after.keys()
    assert not {p for p, (_, u, _) in after.items() if u == "carol"}, "carol stays erased"
    assert after.keys() == backed_up.keys() | newer
    assert "checked by id" in done.message and "(carol)" in done.message

    assert restore(dry_run=True, delete_newer=True).result()["newer"] == len(newer)
    assert _rows_by_id(url) == after, "a dry run writes nothing"
    restore(delete_newer=True)
    assert _rows_by_id(url) == backed_up, "the newer rows are deleted, nothing else"
