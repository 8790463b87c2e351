"""Restore flow: after an upgrade, a backup file brings CURRENT and ARCHIVED back."""

from __future__ import annotations

import pytest

from flows.params import RegenerationParams, RestoreParams
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.domain import PROFILE_KEYS, comparable, read_backup

pytestmark = pytest.mark.integration


def _rows(url: str) -> list[dict]:
    out = []
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        for status in ("current", "archived"):
            stamp = None if status == "current" else status
            out += [
                {**p.model_dump(), "status": p.status or stamp}
                for p in client.list_profiles(status)
            ]
    return out


def test_restore_brings_back_the_backed_up_rows(seeded_stack, prefect_api, tmp_path):
    url = seeded_stack.url
    before = _rows(url)
    state = profile_regeneration(
        RegenerationParams(reflexio_url=url, backup_dir=tmp_path), return_state=True
    )
    assert state.is_completed(), state.message
    backup_file = next(tmp_path.glob("profiles-*.json"))
    assert comparable(_rows(url), PROFILE_KEYS) != comparable(before, PROFILE_KEYS)

    dry = restore_profiles(
        RestoreParams(backup_file=backup_file, reflexio_url=url, dry_run=True), return_state=True
    )
    assert dry.is_completed() and "Dry run" in dry.message

    done = restore_profiles(
        RestoreParams(backup_file=backup_file, reflexio_url=url), return_state=True
    )
    assert done.is_completed(), done.message
    rows = read_backup(backup_file)["rows"]
    assert comparable(_rows(url), PROFILE_KEYS) == comparable(rows, PROFILE_KEYS)
    assert comparable(rows, PROFILE_KEYS) == comparable(before, PROFILE_KEYS)
