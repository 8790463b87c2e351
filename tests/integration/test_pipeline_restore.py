"""Restore flow: after an upgrade, a backup file brings CURRENT and ARCHIVED back.

The backup is taken by hand before the regeneration, in the current format (v2: manifest and
gzip JSON Lines) and as an old v1 document, so both readers are exercised on a real server.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.backup import V1_FORMAT, BackupWriter, open_backup
from core.identity import server_key
from core.kinds import PROFILE_KEYS, comparable
from flows.params import RegenerationParams, RestoreParams
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

RUN_ID = "00000000-test-restore"


def _v2_backup(directory: Path, url: str, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
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
    regen_backup = next((tmp_path / "regen").glob("profiles-*.json"))
    backed_up = list(open_backup(regen_backup).iter_rows())
    assert comparable(backed_up, PROFILE_KEYS) == comparable(before, PROFILE_KEYS)
    upgraded = profile_rows(url, "current", "archived")
    assert comparable(upgraded, PROFILE_KEYS) != comparable(before, PROFILE_KEYS)

    dry = restore_profiles(
        RestoreParams(backup_file=dry_run_file, reflexio_url=url, dry_run=True), return_state=True
    )
    assert dry.is_completed() and "Dry run" in dry.message, dry.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        upgraded, PROFILE_KEYS
    )

    done = restore_profiles(
        RestoreParams(backup_file=backup_file, reflexio_url=url), return_state=True
    )
    assert done.is_completed(), done.message
    assert "equal the backup" in done.message
    assert comparable(profile_rows(url, "current", "archived"), PROFILE_KEYS) == comparable(
        before, PROFILE_KEYS
    )

    again = restore_profiles(
        RestoreParams(backup_file=regen_backup, reflexio_url=url, dry_run=True),
        return_state=True,
    )
    assert again.message == "Dry run: would re-create 0 row(s) and delete 0 newer row(s)."
