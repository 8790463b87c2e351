"""Where listed pages go: one pass over the server's rows feeds the backup file, the gate's
frames and the id snapshot, page by page, so no status is ever held whole as row dicts.

A pass over profiles is a snapshot plus a delta (core/delta.py): the delta's rows reach the
same sinks, each replacing its earlier version by id, so a consumer sees one reading: the
backup holds the later version after the earlier one (read back as the later one:
core/backup.py, v3), the id snapshot and the live-row finder keep the later version, the
frames keep the last version of each id that is still in their status, and rows that left
during the pass are dropped from all but the backup."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from core.backup import BackupInfo, BackupWriter
from core.backup_store import BackupStore
from core.delta import DELTA_MARGIN_S, DeltaBegins, DeltaProof, DeltaSummary
from core.kinds import Kind, Status, row_status
from core.listing import CountedRows
from core.live import LiveRows, LiveRule, Scope
from core.state import IdSnapshot
from gate.frames import FrameBuilder

Page = Sequence[Mapping[str, Any]]


class PageWriter(Protocol):
    """Anything that takes pages of rows, some of them later versions of rows it has (id ->
    the status of the earlier version): a backup writer."""

    def write(
        self, rows: Sequence[Mapping[str, Any]], replaces: Mapping[str, str] | None = None
    ) -> None: ...


class FrameSink(Protocol):
    """The gate's frame builder."""

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None: ...


@dataclass
class PageSink:
    """Routes each listed page: every row to the backup, the snapshot and the live-row
    finder, CURRENT rows in scope to the baseline frame, PENDING rows to the candidate
    frame."""

    kind: Kind
    backup: PageWriter | None = None
    baseline: FrameSink | None = None
    candidate: FrameSink | None = None
    scope: Scope = field(default_factory=Scope)
    live: LiveRows | None = None
    snapshot: IdSnapshot = field(default_factory=IdSnapshot)

    def add(
        self, page: Sequence[Mapping[str, Any]], replaces: Mapping[str, str] | None = None
    ) -> None:
        """Take one page of rows as listed; `replaces`: the rows that are later versions of
        rows taken before (id -> the status the earlier version had)."""
        if self.backup is not None:
            self.backup.write(page, replaces) if replaces else self.backup.write(page)
        self.snapshot.add(self.kind, page)
        if self.live is not None:
            self.live.add(self.kind, page)
        if self.baseline is not None:
            self.baseline.add(
                [r for r in page if row_status(r) == "current" and self.scope.covers(r)]
            )
        if self.candidate is not None:
            self.candidate.add([r for r in page if row_status(r) == "pending"])


@dataclass(frozen=True)
class BackupTarget:
    """Where a reading writes its backup: a store, or a local directory or URL."""

    store: BackupStore | Path | str
    server_url: str
    run_id: str


@dataclass(frozen=True)
class ReadRequest:
    """What one pass over the server's rows produces besides the id snapshot."""

    statuses: tuple[Status, ...]
    backup: BackupTarget | None = None
    baseline: Scope | None = None
    """Build the gate's baseline frame from the CURRENT rows in this scope."""
    candidate: bool = False
    """Build the gate's candidate frame from PENDING rows."""
    live: LiveRule | None = None
    """Pick out live and out-of-scope rows (the pass right before an upgrade)."""
    count_at: int | None = None
    """Count unexpired rows as the statistics endpoint would at this epoch second."""
    delta_margin_s: int = DELTA_MARGIN_S
    """How far before the pass start its delta listing begins (core/delta.py)."""
    delta_since: int | None = None
    """Set by the reader for a snapshot-plus-delta pass: the delta lists rows stamped at or
    after this epoch second (the pass start minus delta_margin_s)."""


@dataclass
class Reading:
    """The result of one pass: ids per status, and whatever the request asked for."""

    snapshot: IdSnapshot
    backup: BackupInfo | None = None
    baseline: pd.DataFrame | None = None
    candidate: pd.DataFrame | None = None
    counted: CountedRows | None = None
    live: LiveRows | None = None
    delta: DeltaSummary | None = None
    """What the pass's delta found (a snapshot-plus-delta pass only)."""


_END = object()


def read_ahead(pages: Iterable[Page]) -> Iterator[Page]:
    """The same pages, the next one fetched (in a thread) while the caller handles this
    one: the server builds page k+1 while this process writes page k to the backup and
    the frames. An error while fetching is raised here; stopping early stops the fetching."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            for page in pages:
                if not hand(page):
                    return
            hand(_END)
        except BaseException as exc:  # handed over and raised in the caller's thread
            hand(exc)

    worker = threading.Thread(target=fetch, name="read-ahead", daemon=True)
    worker.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def consume(kind: Kind, pages: Iterable[Page], request: ReadRequest) -> Reading:
    """Feed every page to the backup, the frames and the snapshot; the backup is finished
    (fsynced, uploaded to a remote store, with its manifest) only when every page went
    through. With `request.delta_since`, `pages` is a snapshot, DeltaBegins, then the
    delta (core/delta.py), merged into one reading."""
    with ExitStack() as stack:
        writer = None
        if request.backup is not None:
            target = request.backup
            writer = stack.enter_context(
                BackupWriter(
                    target.store,
                    kind.name,
                    target.server_url,
                    target.run_id,
                    agent_version=kind.agent_version,
                )
            )
        baseline = FrameBuilder(kind.gate_kind) if request.baseline is not None else None
        candidate = FrameBuilder(kind.gate_kind) if request.candidate else None
        live = LiveRows(request.live) if request.live is not None else None
        sink = PageSink(
            kind, writer, baseline, candidate, scope=request.baseline or Scope(), live=live
        )
        counted = CountedRows(request.count_at) if request.count_at is not None else None
        proof = None
        if request.delta_since is not None:
            count_at = request.count_at if request.count_at is not None else request.delta_since
            proof = DeltaProof(kind, request.delta_since, count_at, sink.snapshot)
        for page in read_ahead(pages):
            if isinstance(page, DeltaBegins):
                if proof is None:
                    raise ValueError("a delta in the pages of a pass without delta_since")
                proof.begin_delta(page.statistics_second)
                continue
            if proof is None:
                sink.add(page)
                if counted is not None:
                    counted.add(page)
                continue
            rows, replaces = proof.take(page)
            sink.add(rows, replaces)
        summary = None
        if proof is not None:
            gone = proof.finish()
            sink.snapshot.discard(gone)
            if live is not None:
                live.discard(gone)
            summary = proof.summary()
            held = summary.held
            counted = CountedRows(
                proof.count_at,
                {"current": held.current, "pending": held.pending, "archived": held.archived},
            )
    return Reading(
        snapshot=sink.snapshot,
        backup=writer.info if writer is not None else None,
        baseline=_latest(baseline, sink.snapshot.current, proof),
        candidate=_latest(candidate, sink.snapshot.pending, proof),
        counted=counted,
        live=live,
        delta=summary,
    )


def _latest(
    builder: FrameBuilder | None, ids: Mapping[str, str], proof: DeltaProof | None
) -> pd.DataFrame | None:
    """The frame built, keeping only the last version of each id, and only ids still in the
    frame's status (a delta may have replaced or dropped rows the frame took earlier)."""
    if builder is None:
        return None
    frame = builder.frame()
    if proof is None or frame.empty:
        return frame
    last = frame.drop_duplicates("row_id", keep="last")
    return last[last["row_id"].isin(ids.keys())].reset_index(drop=True)
