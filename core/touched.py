"""The ids an upgrade touched, saved beside the run's backup."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from core.state import ExpectedState


def touched_path(manifest_path: Path) -> Path:
    """`<backup stem>.touched.json.gz` beside the backup's manifest."""
    name = manifest_path.name.removesuffix(".manifest.json")
    return manifest_path.with_name(f"{name}.touched.json.gz")


def write_touched_ids(
    manifest_path: Path, expected: ExpectedState, kept: frozenset[str] = frozenset()
) -> Path:
    """Write which ids were promoted, archived, deleted and kept CURRENT (archived by the
    upgrade, then made CURRENT again), sorted, fsynced."""
    path = touched_path(Path(manifest_path))
    document = {
        "promoted": sorted(expected.promoted),
        "archived": sorted(expected.archived - kept),
        "deleted": sorted(expected.deleted),
        "kept_current": sorted(kept),
    }
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb") as handle:
            handle.write(json.dumps(document).encode())
        raw.flush()
        os.fsync(raw.fileno())
    return path


def read_touched_ids(path: Path) -> dict[str, list[str]]:
    """The ids a run touched, as written by write_touched_ids."""
    with gzip.open(path, "rt") as handle:
        return json.load(handle)
