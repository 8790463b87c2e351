"""A complete reading of a busy server: a snapshot, then the delta of what changed since the
pass began (issue 17, item 3; hazards H13, H14, H16).

A production server is never quiet: publishes with extraction write CURRENT rows, dedup
supersedes rows, TTL expiry and the daily expiry sweep retire them (H16). "The counts did not
move while we listed" never holds there. What this module proves instead, for one pass over
the listed statuses of profiles:

1. `since` is the server's second when the pass began (`ReflexioClient.server_second`, a
   lower bound of its clock) minus a margin.
2. The snapshot: every status walked backwards with the proven walk (reflexio_api/paging.py),
   tolerating rows that change during the walk.
3. The server's statistics (`after`).
4. The delta: every status listed again, only `last_modified_timestamp >= since`, with the
   same proven walk. A delta row replaces its snapshot version by id (it may be in another
   status); a snapshot row stamped at or after `since` that no delta lists has left the
   listed statuses (deleted, superseded, expired) and is dropped.

Why it is complete. What the pinned server does (reflexio-ai 0.2.32, sqlite_storage): every
write that changes a listed row stamps `last_modified_timestamp` with the server's second:
the upgrade and downgrade (`update_all_profiles_status`), dedup (`supersede_profiles_by_ids`),
the expiry sweep (`expire_active_profiles`), archiving one row, and extraction's inserts.
Listings filter and sort on that column (`get_all_profiles`: `ORDER BY
last_modified_timestamp DESC LIMIT ?`, an inclusive `start_time`/`end_time`). So a row is
either unchanged during the pass, and then the snapshot walk holds it (the walk is proven for
rows that do not change under it), or it was written during the pass, and then it carries a
second at or after the pass start and the delta lists it where it is now.

The margin covers what stamps a row with a second older than its write: extraction computes
a new row's second before its dedup LLM call and embedding (profile/components/extractor.py,
profile/service.py), and one LLM call may take up to its 600 s wall-clock budget
(`_LADDER_WALL_CLOCK_BUDGET_SECONDS`); and the whole seconds of the server's clock and of its
`Date` header. Hence `DELTA_MARGIN_S`.

The statistics stay as a sanity check that tolerates expiry and live inserts but catches a
listing that cuts rows. `get_profile_statistics` counts, per status, the rows whose
`expiration_timestamp` is not before the server's now (sqlite_storage/_extras.py); listings
also return rows that expired but were not swept yet. Read after the snapshot and before the
delta, every row the statistics count in status S is either unchanged since the pass began
(in the snapshot, in S) or written since (in the delta); if the delta shows it elsewhere or
gone, it moved out of S. Per status: rows held unexpired + rows that moved out of S >= the
count. Rows the pass counts as unexpired at its start that expired before `after` make the
check more lenient by that many, never stricter. A listing cut by a proxy, a gateway or a
lost `limit` holds fewer rows and fails it. It can fail spuriously only when a row written
during the pass is written again in the seconds between the statistics and its delta
listing: then the run stops before its next write, saying to run again.

Rows that change during the delta listing itself are read as of some moment of the pass: a
reading of a live server is always a moment ago. The engine treats rows it did not read as
rows users created meanwhile (flows/engine.py, `known`).

Playbooks have no statistics (the server counts profiles only); their listings stay strict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.kinds import Kind, Status, row_status
from core.state import Counts, IdSnapshot

DELTA_MARGIN_S = 900
"""How far before the pass start the delta listing begins (see the module docstring): one
dedup LLM call's 600 s budget between a new row's second and its write, the embedding after
it, and the whole seconds of two clocks. Its cost is re-listing the rows stamped in the last
15 minutes before a pass, e.g. everything an upgrade or a rerun just wrote."""


MOVE_SLACK_S = 120
"""A status move is stamped with the server's second a little before it is written (the
storage computes it, then waits for its lock). A row the delta shows in another status
stamped more than this before the statistics were read had left its status when they were
read, so it does not excuse a missing row of that status."""


@dataclass(frozen=True)
class DeltaBegins:
    """Put between the snapshot's pages and the delta's pages of one pass: the statistics
    were read then, at `statistics_second` (a lower bound of the server's clock)."""

    statistics_second: int | None = None


@dataclass(frozen=True)
class DeltaSummary:
    """What the delta of one pass found, for messages and the count check."""

    since: int
    changed: int
    """Rows the delta listed that were new or in a later version than the snapshot's."""
    gone: int
    """Snapshot rows stamped since the pass began that no delta listed: they left."""
    held: Counts
    """Rows per status in the reading, unexpired at the pass start."""
    moved_out: Counts
    """Rows the snapshot had in a status that the delta shows gone, or in another status
    in a version stamped when the statistics were read or later (MOVE_SLACK_S)."""


@dataclass
class DeltaProof:
    """Merges one pass's snapshot and delta into a reading that keeps one version per id.

    Feed it every page in order (`take`), `begin_delta()` between the snapshot and the
    delta, then `finish()`. `take` says which rows go to the sinks (a row already held in
    the same version is left out) and which of them replace a row the sinks already have.
    `snapshot` is the sinks' id snapshot: it must be updated with each taken page after
    `take` returned (core/sinks.py does).
    """

    kind: Kind
    since: int
    count_at: int
    snapshot: IdSnapshot
    in_delta: bool = False
    statistics_second: int | None = None
    """When the statistics between the snapshot and the delta were read (server clock)."""
    left: set[str] = field(default_factory=set)
    """Ids held in a version stamped since the pass began that no delta listed."""
    recent: dict[str, tuple[Status, int]] = field(default_factory=dict)
    """Ids held in a version stamped at or after `since`, with that version."""
    expired: set[str] = field(default_factory=set)
    """Ids whose held version expired before `count_at` (not counted)."""
    listed: dict[str, int] = field(default_factory=dict)
    """Ids the delta listed, with the second of the version it listed."""
    origin: dict[str, Status] = field(default_factory=dict)
    """Ids the delta replaced, with the status the snapshot held them in."""
    held: Counter[Status] = field(default_factory=Counter)
    changed: int = 0
    gone: int = 0

    def begin_delta(self, statistics_second: int | None = None) -> None:
        """The snapshot's pages are over; what follows is the delta. The statistics were
        read at `statistics_second` (None: unknown)."""
        self.in_delta = True
        self.statistics_second = statistics_second

    def take(
        self, page: Iterable[Mapping[str, Any]]
    ) -> tuple[list[Mapping[str, Any]], dict[str, str]]:
        """The rows of `page` the sinks must take, and among them those that replace a row
        the sinks have (id -> the status it was held in)."""
        rows: list[Mapping[str, Any]] = []
        replaces: dict[str, str] = {}
        batch: dict[str, Status] = {}
        for row in page:
            status = row_status(row)
            if status is None:
                continue
            row_id, second = self.kind.row_id(row), self.kind.timestamp(row) or 0
            if self.in_delta and not self._newer_in_delta(row_id, status, second):
                continue
            before = batch.get(row_id) or self.snapshot.status_of(row_id)
            if before is not None:
                self._forget(row_id, before)
                replaces[row_id] = before
            self._hold(row_id, status, second, row)
            batch[row_id] = status
            rows.append(row)
        return rows, replaces

    def _newer_in_delta(self, row_id: str, status: Status, second: int) -> bool:
        """Whether a delta row is a version the sinks do not hold yet. Within the delta the
        later second wins (a row moved while the delta was listed); the same status and
        second as the version held is the same version."""
        listed = self.listed.get(row_id)
        if listed is not None and second < listed:
            return False
        self.listed[row_id] = second
        if self.recent.get(row_id) == (status, second):
            return False
        if row_id not in self.origin:
            before = self.snapshot.status_of(row_id)
            if before is not None:
                self.origin[row_id] = before
        self.changed += 1
        return True

    def _forget(self, row_id: str, status: Status) -> None:
        """The held version of `row_id` (in `status`) is replaced or gone."""
        if row_id in self.expired:
            self.expired.discard(row_id)
        else:
            self.held[status] -= 1
        self.recent.pop(row_id, None)

    def _hold(self, row_id: str, status: Status, second: int, row: Mapping[str, Any]) -> None:
        expires = row.get("expiration_timestamp")
        if isinstance(expires, int | float) and expires < self.count_at:
            self.expired.add(row_id)
        else:
            self.held[status] += 1
        if second >= self.since:
            self.recent[row_id] = (status, second)

    def finish(self) -> set[str]:
        """After the delta: the ids that left the listed statuses during the pass (held in
        a version stamped since the pass began, listed by no delta). The caller drops them
        from its sinks' state; they stay in the backup, as they were."""
        gone = {row_id for row_id in self.recent if row_id not in self.listed}
        self.left = gone
        for row_id in gone:
            status = self.snapshot.status_of(row_id)
            if status is not None:
                self.origin.setdefault(row_id, status)
                self._forget(row_id, status)
        self.gone = len(gone)
        return gone

    def _maybe_after_statistics(self, row_id: str) -> bool:
        """Whether a row may have left its snapshot status after the statistics were read:
        rows that left without a trace may have; a row the delta lists elsewhere has, unless
        that version was stamped well before (MOVE_SLACK_S)."""
        if row_id in self.left or self.statistics_second is None:
            return True
        return self.listed[row_id] >= self.statistics_second - MOVE_SLACK_S

    def summary(self) -> DeltaSummary:
        """The pass in numbers (after `finish`, and after the sinks took every page)."""
        moved: Counter[Status] = Counter()
        for row_id, was in self.origin.items():
            if self.snapshot.status_of(row_id) != was and self._maybe_after_statistics(row_id):
                moved[was] += 1
        return DeltaSummary(
            since=self.since,
            changed=self.changed,
            gone=self.gone,
            held=Counts(self.held["current"], self.held["pending"], self.held["archived"]),
            moved_out=Counts(moved["current"], moved["pending"], moved["archived"]),
        )
