"""Backup retention: which backups of a server to delete once they are older than N days.

A backup is every file sharing its stem `<kind>-<server slug>-<UTC time>-<run>`: the data
file (`.jsonl.gz`, or `.jsonl.gz.partial` while written), the manifest (`.manifest.json`,
`.manifest.json.tmp`), the touched-ids file and the live-rows backup (`<stem>-live...`).
Its age is the time in its name (when its run started writing it). Never deleted: the
newest finished backup (one with its manifest) of each kind and agent_version of the
server, with the files beside it, and the backup of the run that asks. Erasure records and
other files in the folder do not match the names and are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.backup import LIVE_PART, MANIFEST_SUFFIX, BackupError, open_backup
from core.backup_store import BackupStore
from core.identity import server_slug

_NAME = re.compile(
    r"^(?P<stem>(?P<kind>profiles|user_playbooks)-(?P<server>[a-z0-9-]+?)"
    r"-(?P<time>\d{8}T\d{6}Z)-(?P<run>.{1,8}?))"
    rf"(?:-{LIVE_PART})?"
    r"(?:\.jsonl\.gz(?:\.partial)?|\.manifest\.json(?:\.tmp)?|\.touched\.json\.gz(?:\.tmp)?)$"
)


@dataclass(frozen=True)
class StoredBackup:
    """The files of one backup in a store."""

    stem: str
    kind: str
    server: str
    """The server's slug, as in the file names."""
    created: datetime
    run: str
    """The first 8 characters of the run id that wrote it."""
    files: tuple[str, ...]
    """Manifests first: a backup deleted halfway never looks finished."""

    @property
    def finished(self) -> bool:
        """Whether its manifest is there."""
        return self.stem + MANIFEST_SUFFIX in self.files


def stored_backups(names: Iterable[str]) -> list[StoredBackup]:
    """The backups among the file names of a store (other files are left out)."""
    groups: dict[str, list[str]] = {}
    found: dict[str, re.Match[str]] = {}
    for name in names:
        match = _NAME.match(name)
        if match is not None:
            groups.setdefault(match["stem"], []).append(name)
            found[match["stem"]] = match
    return [
        StoredBackup(
            stem=stem,
            kind=found[stem]["kind"],
            server=found[stem]["server"],
            created=datetime.strptime(found[stem]["time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
            run=found[stem]["run"],
            files=tuple(sorted(files, key=lambda n: (MANIFEST_SUFFIX not in n, n))),
        )
        for stem, files in sorted(groups.items())
    ]


def to_prune(
    backups: Iterable[StoredBackup],
    now: datetime,
    days: int,
    line_of: Callable[[StoredBackup], Hashable] = lambda b: b.kind,
    protect_run: str = "",
) -> list[StoredBackup]:
    """The backups older than `days` days, except the newest finished one of each line
    (`line_of`: kind and agent_version) and those of the run `protect_run`. None at
    `days` 0 (keep all)."""
    if days <= 0:
        return []
    backups = list(backups)
    newest: dict[Hashable, StoredBackup] = {}
    for backup in backups:
        if backup.finished:
            line = line_of(backup)
            if line not in newest or backup.created > newest[line].created:
                newest[line] = backup
    kept = {b.stem for b in newest.values()}
    cutoff = now - timedelta(days=days)
    return [
        b
        for b in backups
        if b.created < cutoff and b.stem not in kept and not (protect_run and b.run == protect_run)
    ]


def prune(
    store: BackupStore, server_url: str, days: int, now: datetime, run_id: str = ""
) -> list[StoredBackup]:
    """Delete the server's backups that `to_prune` names (manifest first); returns them.
    A playbook backup's line is read from its manifest; one that cannot be read is its own
    line, so it is kept."""
    slug = server_slug(server_url)
    mine = [b for b in stored_backups(store.list()) if b.server == slug]

    def line_of(backup: StoredBackup) -> Hashable:
        if backup.kind == "profiles":
            return backup.kind
        try:
            return backup.kind, open_backup(backup.stem + MANIFEST_SUFFIX, store).agent_version
        except BackupError:
            return backup.stem

    doomed = to_prune(mine, now, days, line_of, run_id[:8])
    for backup in doomed:
        for name in backup.files:
            store.delete(name)
    return doomed
