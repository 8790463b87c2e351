"""Rows a run must not take from CURRENT: live rows and rows outside the run's scope.

On a live server users keep talking while a rerun works, and the server files what it
learns as new CURRENT rows (H14). The upgrade archives every CURRENT row of the users it
promotes, those fresh rows included. A run limited to some sources regenerates only
their rows, but the upgrade archives the user's rows of other sources too.

So, right before the upgrade, one pass over the rows picks:

- **live rows**: CURRENT or ARCHIVED rows the run did not see before its rerun (new ids),
  and CURRENT rows changed since the rerun started (timestamp at or after its start). They
  are saved to a file of their own, since the backup predates them.
- **out-of-scope rows**: CURRENT rows of sources the run does not regenerate.

After the upgrade, the ones it archived are made CURRENT again (`rows_to_keep`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.kinds import Kind, row_status
from core.state import IdSnapshot, name_ids
from gate.scope import has_no_source, unsourced


@dataclass(frozen=True)
class Scope:
    """What a run regenerates: some sources, a time window, or everything.

    Only sources scope rows: a row carries the source of the request that wrote it. A time
    window scopes the interactions the rerun reads, not rows: a row's timestamp is when it
    was last written (every upgrade stamps every row it promotes), not when what it says
    was learned, so the upgrade replaces every CURRENT row of the users it promotes. A row
    without a source (written by a rerun over every source, H15) is in scope only when the
    run was told to replace such rows (`unsourced`)."""

    sources: tuple[str, ...] = ()
    start: int | None = None
    end: int | None = None
    unsourced: bool = False

    def covers(self, row: Mapping[str, Any]) -> bool:
        """Whether the upgrade may replace this row with the run's candidate."""
        if not self.sources:
            return True
        source = row.get("source")
        return self.unsourced if has_no_source(source) else source in self.sources

    def describe(self) -> str:
        """The scope in words, for messages."""
        parts = []
        if self.sources:
            parts.append(f"sources {', '.join(self.sources)}")
        if self.start is not None or self.end is not None:
            parts.append(f"time window {self.start or '-'}..{self.end or '-'} (epoch s)")
        return " and ".join(parts) or "everything"


def unsourced_refusal(scope: Scope, baseline: pd.DataFrame, label: str) -> str | None:
    """Why a run scoped to sources must not go on while CURRENT rows (`baseline`, read with
    source-less rows) carry no source (H15), and what to do; None when it may."""
    if not scope.sources or scope.unsourced:
        return None
    rows = baseline[unsourced(baseline)]
    if rows.empty:
        return None
    return (
        f"Refusing to regenerate {scope.describe()}: {len(rows)} CURRENT {label} of "
        f"{rows['user_id'].nunique()} user(s) carry no source (a rerun without sources wrote "
        "them, H15), so this run cannot tell which of them its sources taught. Kept, they "
        "would stay next to the new rows that learn part of the same facts again; replaced, "
        "the facts they hold from other sources go with them. Nothing was written to the "
        "server. Run without sources (every source regenerated together), or set "
        "replace_unsourced_rows=true to let the upgrade replace the source-less rows of the "
        "users this run regenerates (the gate then compares the candidate with them)."
    )


def replaced_beyond_candidate(scope: Scope, at_stake: pd.DataFrame, label: str) -> list[str]:
    """What the upgrade replaces beyond what the candidate was learned from, in words: rows
    without a source (replace_unsourced_rows) and, in a time window, rows of any
    timestamp. `at_stake`: the CURRENT rows the upgrade archives (the gate's baseline)."""
    notes = []
    bare = at_stake[unsourced(at_stake)] if scope.sources else at_stake.iloc[0:0]
    if not bare.empty:
        notes.append(
            f"{len(bare)} CURRENT {label} of {bare['user_id'].nunique()} user(s) carry no "
            f"source (H15) and are replaced by this candidate, learned from "
            f"{', '.join(scope.sources)} only (replace_unsourced_rows): what they hold from "
            "other sources is not learned again by this run."
        )
    if scope.start is not None or scope.end is not None:
        notes.append(
            f"The {scope.describe()} limits the interactions the rerun read, not the rows the "
            "upgrade replaces: every CURRENT row it archives, whatever its timestamp, is the "
            f"gate's baseline ({len(at_stake)} {label} of {at_stake['user_id'].nunique()} "
            "user(s))."
        )
    return notes


@dataclass(frozen=True)
class LiveRule:
    """How the pass before the upgrade tells live and out-of-scope rows apart."""

    known_ids: frozenset[str]
    """Every id the run read before its rerun."""
    rerun_started_at: int | None
    """The server's epoch second the (first) rerun started."""
    scope: Scope = field(default_factory=Scope)


@dataclass
class LiveRows:
    """What the pass found: live rows whole (to save and re-promote), out-of-scope ids."""

    rule: LiveRule
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    out_of_scope: set[str] = field(default_factory=set)

    def add(self, kind: Kind, page: Iterable[Mapping[str, Any]]) -> None:
        """Look at one page of listed rows. A row seen before is looked at again: its later
        version (a pass's delta, core/delta.py) replaces what was found for it."""
        for row in page:
            status = row_status(row)
            row_id = kind.row_id(row)
            self.discard((row_id,))
            if status not in ("current", "archived"):
                continue
            if self._is_live(kind, row_id, status, row):
                self.rows[row_id] = dict(row)
            elif status == "current" and not self.rule.scope.covers(row):
                self.out_of_scope.add(row_id)

    def _is_live(self, kind: Kind, row_id: str, status: str, row: Mapping[str, Any]) -> bool:
        if row_id not in self.rule.known_ids:
            return True
        since, stamp = self.rule.rerun_started_at, kind.timestamp(row)
        return status == "current" and since is not None and stamp is not None and stamp >= since

    def discard(self, row_ids: Iterable[str]) -> None:
        """Forget these ids (rows that left the listed statuses)."""
        for row_id in row_ids:
            self.rows.pop(row_id, None)
            self.out_of_scope.discard(row_id)

    def current_ids(self) -> set[str]:
        """Ids of the live rows that are CURRENT."""
        return {i for i, r in self.rows.items() if row_status(r) == "current"}


@dataclass(frozen=True)
class KeepPlan:
    """The CURRENT rows the upgrade will archive and the run must make CURRENT again."""

    live: frozenset[str]
    out_of_scope: frozenset[str]

    @property
    def ids(self) -> frozenset[str]:
        """Every id to keep CURRENT."""
        return self.live | self.out_of_scope


def rows_to_keep(live: LiveRows, archived_by_upgrade: Collection[str]) -> KeepPlan:
    """Of the live and out-of-scope CURRENT rows, those the upgrade is going to archive."""
    archived = set(archived_by_upgrade)
    return KeepPlan(
        live=frozenset(live.current_ids() & archived),
        out_of_scope=frozenset(live.out_of_scope & archived),
    )


def kept_problems(
    kind: Kind,
    kept: Sequence[Mapping[str, Any]],
    now: IdSnapshot,
    seen: Collection[str],
) -> list[str]:
    """How the rows made CURRENT again fall short: profiles by id; user playbooks (re-created
    with new ids) by new CURRENT ids, not in `seen`, per user. Empty when none."""
    if kind.recreate_keeps_ids:
        missing = {kind.row_id(r) for r in kept} - set(now.current)
        return [f"{len(missing)} kept row(s) not CURRENT: {name_ids(missing)}"] if missing else []
    wanted = Counter(str(r.get("user_id")) for r in kept)
    made = Counter(user for i, user in now.current.items() if i not in seen)
    short = sorted(user for user, n in wanted.items() if made[user] < n)
    if not short:
        return []
    return [f"{len(short)} user(s) without their re-created CURRENT row(s): {', '.join(short)}"]
