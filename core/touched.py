"""The ids an upgrade touched, saved beside the run's backup (in the same store)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from core.backup import MANIFEST_SUFFIX, BackupError
from core.backup_store import BackupStore, split_location
from core.state import ExpectedState

TOUCHED_SUFFIX = ".touched.json.gz"


def touched_name(manifest_name: str) -> str:
    """`<backup stem>.touched.json.gz`, the name beside the backup's manifest."""
    return manifest_name.removesuffix(MANIFEST_SUFFIX) + TOUCHED_SUFFIX


def write_touched_ids(
    manifest: str | Path,
    expected: ExpectedState,
    kept: frozenset[str] = frozenset(),
    store: BackupStore | None = None,
    discarded: frozenset[str] = frozenset(),
) -> str:
    """Write which ids were promoted, archived, deleted, kept CURRENT (archived by the
    upgrade, then made CURRENT again) and discarded (stale PENDING rows deleted before the
    rerun), sorted, whole and durably, beside the manifest (a name in `store`, or a path or
    URL); returns its location. BackupError when it cannot be written."""
    if store is None:
        store, manifest = split_location(manifest)
    name = touched_name(str(manifest))
    document = {
        "promoted": sorted(expected.promoted),
        "archived": sorted(expected.archived - kept),
        "deleted": sorted(expected.deleted),
        "kept_current": sorted(kept),
        "discarded_stale_pending": sorted(discarded),
    }
    try:
        store.write_bytes(name, gzip.compress(json.dumps(document).encode()))
    except OSError as exc:
        raise BackupError(
            f"Cannot write the ids the upgrade will touch to {store.location(name)}: {exc}. "
            "Nothing was upgraded. Check backup_dir, then run again."
        ) from None
    return store.location(name)


def read_touched_ids(path: str | Path, store: BackupStore | None = None) -> dict[str, list[str]]:
    """The ids a run touched, as written by write_touched_ids (a name in `store`, or a
    path or URL)."""
    if store is None:
        store, path = split_location(path)
    return json.loads(gzip.decompress(store.read_bytes(str(path))))
