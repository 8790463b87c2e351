"""Restore flow on the real server.

1. A backup taken by hand before the regeneration, in the current format (v2: manifest and
   gzip JSON Lines) and as an old v1 document, has no touched-ids file: refused (nothing
   written) until recreate_missing and assume_no_erasures accept the risks; then it brings
   CURRENT and ARCHIVED back exactly with delete_newer (the run's promotions count as newer).
2. After a regeneration that upgraded, rows learned since and a user erased with the
   clear-user-data flow: the default restore undoes the run and keeps the newer rows and the
   erasure; delete_newer deletes the newer rows; the dry runs write nothing.
3. After a regeneration, a user erased through the API directly, rows users deleted and rows
   expired: nothing of them comes back, each counted as gone since the backup.
4. A restore that undoes a run that touched more than 25,000 rows (27,000 deletes): refused
   without an erasure record, stopped part-way by a failing request, finished by the next
   restore from the run journal.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.backup import V1_FORMAT, BackupWriter, open_backup
from core.erasures import erasure_name, record_erasures
from core.identity import server_key
from core.kinds import PROFILE_KEYS, comparable
from core.state import ExpectedState
from core.touched import read_touched_ids, write_touched_ids
from flows.clear_users import clear_users
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from local_stack.bulk_seed import ProfileSeed
from local_stack.fault_proxy import FaultProxy
from local_stack.seed import CONVERSATIONS
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api._requests import MAX_IDS_PER_DELETE
from reflexio_api.paging import PAGE_SIZE
from tests.integration.pipeline_helpers import profile_rows, rows_by_id, run_backup

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


@pytest.mark.parametrize(
    "write_backup",
    [_v2_backup, pytest.param(_v1_backup, marks=pytest.mark.slow)],  # CI: v2, and v1 in unit
    ids=["v2", "v1"],
)
def test_restore_brings_back_the_backed_up_rows(seeded_stack, prefect_api, tmp_path, write_backup):
    url = seeded_stack.url
    before = profile_rows(url, "current", "archived")
    backup_file, dry_run_file = write_backup(tmp_path / "by-hand", url, before)

    state = profile_regeneration(reflexio_url=url, backup_dir=tmp_path / "regen", return_state=True)
    assert state.is_completed(), state.message
    regen_backup = run_backup(tmp_path / "regen")
    backed_up = list(open_backup(regen_backup).iter_rows())
    assert comparable(backed_up, PROFILE_KEYS) == comparable(before, PROFILE_KEYS)
    upgraded = profile_rows(url, "current", "archived")
    assert comparable(upgraded, PROFILE_KEYS) != comparable(before, PROFILE_KEYS)

    # A hand-made backup has no touched-ids file: refused, since every missing row would be
    # re-created (rows users deleted or expired since included).
    refused = restore_profiles(
        backup_file=backup_file,
        reflexio_url=url,
        records_dir=tmp_path / "r",
        return_state=True,
    )
    assert refused.is_failed() and refused.message.startswith("Restore failed: "), refused.message
    assert "recreate_missing=true" in refused.message
    assert refused.message.endswith("Nothing was written.")
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        upgraded, PROFILE_KEYS
    )

    # Accepted: the rows the run promoted cannot be told from rows learned since, so only
    # delete_newer brings the backup back exactly.
    accept = {"recreate_missing": True, "assume_no_erasures": True}
    dry = restore_profiles(
        backup_file=dry_run_file,
        reflexio_url=url,
        dry_run=True,
        **accept,
        return_state=True,
    )
    assert dry.is_completed() and "Dry run, nothing written" in dry.message, dry.message
    promoted = {r["profile_id"] for r in upgraded} - {r["profile_id"] for r in before}
    assert dry.result()["newer"] == len(promoted) > 0
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        upgraded, PROFILE_KEYS
    )

    done = restore_profiles(
        backup_file=backup_file,
        reflexio_url=url,
        delete_newer=True,
        **accept,
        return_state=True,
    )
    assert done.is_completed(), done.message
    assert not done.message.startswith("Repaired"), "no restore was left unfinished"
    assert "checked by id" in done.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        before, PROFILE_KEYS
    )

    again = restore_profiles(
        backup_file=regen_backup,
        reflexio_url=url,
        dry_run=True,
        assume_no_erasures=True,
        return_state=True,
    )
    assert again.message == (
        "Dry run, nothing written; would re-create 0, re-status 0, delete 0 promoted by the "
        "backed-up run; 0 learned since the backup kept (delete_newer=True deletes them)."
    )


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
    before = rows_by_id(url)

    regen = profile_regeneration(reflexio_url=url, backup_dir=tmp_path / "regen", return_state=True)
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
        user_ids=["carol"],
        reflexio_url=url,
        records_dir=tmp_path,
        return_state=True,
    )
    assert erased.is_completed(), erased.message
    carol = {pid for pid, (_, user, _) in before.items() if user == "carol"}
    bob = {pid for pid, (_, user, _) in before.items() if user == "bob"}
    assert carol and bob and not carol & touched["deleted"]
    now = rows_by_id(url)
    undo = touched["promoted"] & now.keys()
    assert undo and not {p for p, (_, u, _) in now.items() if u == "carol"}

    def restore(**params):
        state = restore_profiles(
            backup_file=manifest,
            reflexio_url=url,
            records_dir=tmp_path,
            **params,
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
        "gone since backup": 0,
        "erased rows": len(carol),
        "erased users": 1,
        "pending left": 0,
    }
    assert "(carol)" in dry.message and f"{len(newer)} learned since the backup kept" in dry.message
    assert rows_by_id(url) == now, "a dry run writes nothing"

    done = restore()
    after = rows_by_id(url)
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
    assert rows_by_id(url) == after, "a dry run writes nothing"
    restore(delete_newer=True)
    assert rows_by_id(url) == backed_up, "the newer rows are deleted, nothing else"


def _add_archived(url: str, users: tuple[str, ...], per_user: int) -> set[str]:
    """Old ARCHIVED rows (the next upgrade deletes them, H1), as an earlier upgrade left them."""
    when = int(datetime.now(UTC).timestamp()) - 86_400
    rows = [
        {
            "profile_id": f"old-{user}-{n}",
            "user_id": user,
            "content": f"{user} used to say {n}",
            "status": "archived",
            "last_modified_timestamp": when,
            "generated_from_request_id": f"old-{user}-{n}",
            "source": "chat",
        }
        for user in users
        for n in range(per_user)
    ]
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        client.add_user_profiles(rows)
    return {r["profile_id"] for r in rows}


def _no_erasures_yet(records: Path, url: str) -> None:
    """The erasure record of a server where clear-user-data has erased nobody: empty."""
    records.mkdir(parents=True, exist_ok=True)
    (records / erasure_name(server_key(url))).write_text("")


def _expire(db_path: Path, ids: set[str]) -> None:
    """TTL expiry as the server's expiry sweep leaves it: the time to live elapsed and the
    row tombstoned (status 'expired'), which no listing shows."""
    with sqlite3.connect(db_path, timeout=30) as db:
        db.executemany(
            "UPDATE profiles SET expiration_timestamp = 1, status = 'expired' WHERE profile_id = ?",
            [(pid,) for pid in ids],
        )


def test_restore_resurrects_nothing_erased_deleted_or_expired(seeded_stack, prefect_api, tmp_path):
    """After the nightly: erin erased with clear_user_data on the API directly (no erasure
    record), alice and bob deleting rows, rows of dave expiring. The restore undoes the run
    and brings back none of those rows; every one is counted as gone since the backup."""
    url = seeded_stack.url
    old = _add_archived(url, ("alice", "dave", "erin", "frank"), 2)
    _no_erasures_yet(tmp_path / "records", url)
    before = rows_by_id(url)
    by_user = {u: {p for p, (_, user, _) in before.items() if user == u} for u in CONVERSATIONS}
    assert by_user["erin"] - old, "erin has CURRENT rows for the run to archive"

    regen = profile_regeneration(reflexio_url=url, backup_dir=tmp_path / "regen", return_state=True)
    assert regen.is_completed(), regen.message
    manifest = Path(regen.result().backup)
    touched = {k: set(v) for k, v in read_touched_ids(regen.result().touched.ids_file).items()}
    assert old <= touched["deleted"] and touched["promoted"]
    upgraded = rows_by_id(url)
    alice_archived = sorted(by_user["alice"] & touched["archived"])[:1]
    bob_promoted = sorted(p for p in touched["promoted"] if upgraded[p][1] == "bob")[:1]
    dave_archived = sorted(by_user["dave"] & touched["archived"])[:2]
    assert alice_archived and bob_promoted and len(dave_archived) == 2

    with ReflexioClient(ReflexioSettings(url=url)) as client:
        erased = client.clear_user_data("erin")  # straight to the API: no erasure record
        assert erased.deleted_counts.get("profiles"), erased
        client.delete_profiles([*alice_archived, *bob_promoted])  # users deleting rows
    _expire(seeded_stack.server.db_path, set(dave_archived))
    now = rows_by_id(url)
    erin_backed = by_user["erin"]
    gone = erin_backed | set(alice_archived) | set(dave_archived)
    assert {p: now[p] for p in gone & now.keys()} == {}
    assert not {p for p, r in now.items() if r[1] == "erin"}

    def restore(**params):
        return restore_profiles(
            backup_file=manifest,
            reflexio_url=url,
            records_dir=tmp_path / "records",
            **params,
            return_state=True,
        )

    dry = restore(dry_run=True)
    assert dry.is_completed(), dry.message
    assert rows_by_id(url) == now, "a dry run writes nothing"
    counts = dry.result()
    assert counts["gone since backup"] == len(gone), (counts, sorted(gone))
    assert counts["re-create"] == len(touched["deleted"] - erin_backed)
    assert counts["erased users"] == 0, "no record names erin: she is found by her rows"

    done = restore()
    assert done.is_completed(), done.message
    assert not done.message.startswith("Repaired"), "no restore was left unfinished"
    assert "checked by id" in done.message
    assert f"gone since the backup, not re-created: {len(gone)}" in done.message
    after = rows_by_id(url)
    assert not gone & after.keys(), "nothing gone since the backup came back"
    assert not {p for p, r in after.items() if r[1] == "erin"}, "erin stays erased"
    kept = {pid: row for pid, row in before.items() if pid not in gone}
    assert {pid: after.get(pid) for pid in kept} == kept, "every other backed-up row is back"
    assert after.keys() == kept.keys(), "the run's promoted rows are gone, nothing else is new"

    again = restore()
    assert again.is_completed(), again.message
    assert rows_by_id(url) == after, "a second restore changes nothing"


PROMOTED_AT_SIZE = 25_000
"""Rows the backed-up run promoted: five delete requests' worth (the client's cap is 10,000
ids a request; the flows send DELETE_BATCH)."""
NEWER_AT_SIZE = 2_000
"""Rows learned since the backup, deleted with delete_newer: 27,000 deletes in all."""


def _archive(db_path: Path, ids: set[str]) -> None:
    """The upgrade's archiving of backed-up CURRENT rows, as the server leaves it."""
    with sqlite3.connect(db_path, timeout=30) as db:
        db.executemany(
            "UPDATE profiles SET status = 'archived' WHERE profile_id = ?", [(p,) for p in ids]
        )


def test_a_restore_that_deletes_more_than_10000_rows_finishes_and_resumes(
    seeded_stack, prefect_api, tmp_path
):
    """Undo a run that touched more than 25,000 rows. The run is made by hand, to keep the
    test short (re-creating rows is slow: the server embeds each one; deleting is not): a
    backup of the seeded rows, then 25,000 rows its 'upgrade' promoted and the CURRENT rows
    of two users it archived (all named in its touched-ids file), and 2,000 rows learned
    since, bulk-seeded. A restore with delete_newer deletes all 27,000 and puts the archived
    rows back: refused first without an erasure record, stopped part-way by a failing
    request, finished by the next restore from the journal, checked by id."""
    url = seeded_stack.url
    records = tmp_path / "records"
    before = rows_by_id(url)
    archived = {p for p, (status, user, _) in before.items() if user in {"alice", "bob"}}
    assert archived and all(before[p][0] is None for p in archived), "CURRENT rows"
    seeds = [
        ProfileSeed("current", PROMOTED_AT_SIZE, users=2_500, id_prefix="promoted"),
        ProfileSeed("current", NEWER_AT_SIZE, users=100, id_prefix="late"),
    ]
    with FaultProxy(url) as proxy:
        rows = profile_rows(url, "current", "archived")
        manifest, _ = _v2_backup(tmp_path / "run", proxy.url, rows)
        promoted = frozenset(seeds[0].ids())
        write_touched_ids(
            manifest,
            ExpectedState(
                promoted=promoted,
                current=promoted,
                archived=frozenset(archived),
                deleted=frozenset(),
            ),
        )
        seeded_stack.bulk_seed(seeds)
        _archive(seeded_stack.server.db_path, archived)
        newer = set(seeds[1].ids())
        assert len(promoted | archived) > 25_000 and len(promoted) > 2 * MAX_IDS_PER_DELETE
        now = rows_by_id(url)
        assert promoted | newer <= now.keys()
        assert {now[p][0] for p in archived} == {"archived"}

        def restore() -> Any:
            return restore_profiles(
                backup_file=manifest,
                reflexio_url=proxy.url,
                records_dir=records,
                delete_newer=True,
                return_state=True,
            )

        # No erasure record: refused, nothing written, the parameter that accepts it named.
        refused = restore()
        assert refused.is_failed()
        assert refused.message.startswith("Restore failed: No erasure record ")
        assert "assume_no_erasures=true" in refused.message
        assert refused.message.endswith("Nothing was written.")
        assert rows_by_id(url) == now
        _no_erasures_yet(records, proxy.url)

        # The second delete request fails (a 400 is not retried): the run stops part-way.
        with proxy.rule(fault="status", status=400, method="DELETE", path="delete_prof", nth=2):
            partial = restore()
        assert partial.is_failed(), partial.message
        assert "the next writer on this server runs the restore again" in partial.message
        left = rows_by_id(url).keys()
        assert 0 < len(promoted & left) < len(promoted), "the run stopped part-way"

        done = restore()
        deletes = proxy.calls("DELETE", "delete_prof")
    assert done.is_completed(), done.message
    # The next writer (here the same restore) first ran the dead one again from its journal.
    assert done.message.startswith("Repaired an unfinished restore-profiles"), done.message
    assert "checked by id" in done.message
    assert f"delete {len(promoted & left)} promoted by the backed-up run" in done.message
    assert f"{len(newer)} learned since the backup deleted" in done.message
    assert rows_by_id(url) == before, "exactly the backed-up rows, by id, status and content"
    assert len(deletes) == 2 + 4 + 1  # 5,000 and a refused one; then 4 x 5,000, and 2,000
