"""Complete listings over capped, offset-less endpoints (hazard H13). Pure logic, no I/O.

The Reflexio listings return at most `limit` rows, newest second first, and filter on an
inclusive window of whole epoch seconds; they have no offset and never say that more rows
exist. `iter_pages` walks windows backwards in time and proves every step complete:

- ask for `end=cursor, limit=page_size` (the first request has no end);
- a short page (fewer rows than the limit) proves the rest of the window complete;
- a full page proves every second newer than its oldest second B complete. B itself may
  continue past the page, so the next request asks again for `end=B`: once that page
  reaches below B, B is complete too (the overlap is deduplicated by id);
- a full page holding only B (one second with more rows than a page, e.g. an upgrade that
  stamped 12,000 rows with the same second) is fetched alone, `start=end=B`, with a limit
  large enough that a shorter answer proves it complete; then the walk goes on below B.

A one-second fetch carries at most `split_limit` rows when the listing can be split by a
second column the server also windows on (profiles: `created_at`, `Split`): after an
upgrade of a million rows every moved row carries the upgrade's second, and one answer of
them all outlasts the server's 60 s request limit. Such a second is read in windows of the
split column instead: the server windows on one column at a time, so each answer holds rows
of every second of the status created in that window, ordered as usual; a short answer
proves its window complete, a full one is asked again half as wide. The windows walk down
from the crowded second to the column's open end, then up to the other, so together they
cover every value, and the rows of the crowded second they hold are all of them. A single
split second with more rows than an answer carries cannot be proven and raises.

The last, short answer is confirmed by one request below its oldest row, which must be
empty (this catches answers cut below the page size by a proxy or a lost `limit`).
Whatever cannot be proven raises `IncompleteListing`: a page out of the promised order, a
row outside the requested window, an answer longer than its limit, a row seen twice or
gone between two requests (the data changed during the walk), a boundary second that
fills even the hard maximum limit, fewer rows than `expected_total`.

`start` bounds the walk below (the window becomes `[start, cursor]`): the delta listing of
"what changed since the pass began" walks only the seconds at or after `start`.

**Changes during the walk** (`tolerate_changes=True`, for a walk that a delta listing
follows, core/delta.py). On a live server rows change while a status is walked. Every
server write that changes a listed row stamps it with the server's current second (status
moves, extraction, dedup, expiry; reflexio-ai 0.2.32 sqlite_storage), so a row changed
during the walk either moved to a second newer than the cursor, or left the status (deleted,
tombstoned, moved to another status). Then:

- a held row of a boundary second that is gone from the next answer is dropped (it was not
  yielded): it left the status, or moved to a newer second, where the delta listing (every
  row stamped since the pass began, minus a margin) finds it;
- a row seen again at another second is yielded again, with its new second; the consumer
  keeps the later version of an id (core/delta.py);
- `expected_total` only sizes the one-second fetches: rows that leave during the walk make
  fewer rows than counted before it legitimate, and the count check moves after the delta
  (core/listing.check_delta_against_statistics).

Rows can only be missed by moving from below the cursor to above it, that is by a write
during the pass, which the delta listing covers. The cut detectors stay strict: the probe
below a short answer, the order, the window, the limit and the repeats inside one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from reflexio_api.errors import IncompleteListing

R = TypeVar("R")

PAGE_SIZE = 5_000
"""Rows per request. Measured on reflexio-ai 0.2.32 with 100,000 ARCHIVED profiles: one
unpaged request 14 s (40 MB); pages of 1,000: 43 s (84 requests), 5,000: 16-19 s (20),
25,000: 16 s (6). Each request scans and sorts the whole status (no index on the time
column), so fewer, larger pages win; 5,000 rows is about 2 MB and 20 requests per 100,000
rows, within get_all_profiles' 30/min."""
MAX_BOUNDARY_ROWS = 2_000_000
"""Hard maximum limit of a one-second fetch. SQLite's LIMIT costs nothing beyond the rows
that exist, so a large limit is free when the second is small."""
SPLIT_ROWS = 250_000
"""Most rows one answer carries when a crowded second can be split (see the module
docstring): tasks/ops.py's largest page, read at 1M rows per status within the request
limit; a one-second block of 300,000 rows answered 504 (bench/RESULTS.md, *Delta proof at
size*)."""
SPLIT_WIDTH_S = 3_600
"""The first window of the split column, in seconds (then sized from the rows found)."""
SPLIT_FLOOR, SPLIT_CEILING = 0, 2**32
"""Past these the split column's window is left open (epoch 0, the year 2106)."""
_RETRY = "List again when no writer runs (the pipelines hold the writer lock)."


@dataclass(frozen=True)
class Window:
    """Inclusive bounds in whole epoch seconds; None means open."""

    start: int | None = None
    end: int | None = None

    def holds(self, second: int) -> bool:
        """True when `second` lies inside the window."""
        above = self.start is None or second >= self.start
        below = self.end is None or second <= self.end
        return above and below

    def __str__(self) -> str:
        return f"[{_bound(self.start)}, {_bound(self.end)}]"


Fetch = Callable[[Window, int], Sequence[R]]
"""Send one listing request for `window` with `limit`; return the rows in server order."""


@dataclass(frozen=True)
class Split(Generic[R]):
    """A second column the server windows on (never together with the ordering's column),
    to read a second holding more rows than one answer carries (see the module docstring).
    `fetch` windows on this column; answers keep the ordering's order. Rows need not carry
    the column (profiles do not send `created_at`)."""

    column: str
    fetch: Fetch[R]


@dataclass(frozen=True)
class Ordering(Generic[R]):
    """How a listing is ordered by the server, and how to read a row's identity and time.

    `second_of` is the window column in whole seconds, sorted descending. `tiebreak`, when
    the server sorts ties too (playbooks: id descending), is checked descending as well.
    `min_second` is the oldest second the window column can hold (None: unbounded).
    """

    what: str
    id_of: Callable[[R], Hashable]
    second_of: Callable[[R], int]
    tiebreak: Callable[[R], Any] | None = None
    min_second: int | None = None


def iter_pages(
    fetch: Fetch[R],
    ordering: Ordering[R],
    *,
    page_size: int = PAGE_SIZE,
    expected_total: int | None = None,
    max_limit: int = MAX_BOUNDARY_ROWS,
    start: int | None = None,
    tolerate_changes: bool = False,
    split: Split[R] | None = None,
    split_limit: int = SPLIT_ROWS,
) -> Iterator[list[R]]:
    """Yield every row of the listing exactly once, in pages of at most `page_size` rows.

    `expected_total` (e.g. from statistics) sizes the one-second fetches so that one request
    suffices without asking for more than expected, and is a floor: fewer rows listed raises
    (it catches answers cut above the page size). Raises IncompleteListing whenever
    completeness cannot be proven; rows already yielded must then not be acted on.

    `start` lists only the seconds at or after it. With `tolerate_changes` (only for a walk
    a delta listing follows: see the module docstring), rows that change during the walk
    are tolerated: one gone between two requests is dropped, one seen again at another
    second is yielded again (keep the later version of an id), and `expected_total` is no
    floor.

    `split` reads a second of more than `split_limit` rows in windows of another column
    (at most `split_limit` rows an answer); without it such a second is one answer of up to
    `max_limit` rows.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    if max_limit <= page_size:
        raise ValueError(f"max_limit ({max_limit}) must exceed page_size ({page_size})")
    if start is not None:
        floor = start if ordering.min_second is None else max(start, ordering.min_second)
        ordering = replace(ordering, min_second=floor)
    if split is not None and split_limit < page_size:
        raise ValueError(f"split_limit ({split_limit}) must be at least page_size ({page_size})")
    walk = _Walk(
        fetch,
        ordering,
        page_size,
        expected_total,
        max_limit,
        tolerate_changes,
        start,
        split,
        split_limit,
    )
    yield from walk.pages()


class _Walk(Generic[R]):
    """State of one backwards walk: the cursor and every id yielded with its second."""

    def __init__(
        self,
        fetch: Fetch[R],
        ordering: Ordering[R],
        page_size: int,
        expected_total: int | None,
        max_limit: int,
        tolerate_changes: bool = False,
        start: int | None = None,
        split: Split[R] | None = None,
        split_limit: int = SPLIT_ROWS,
    ) -> None:
        self.tolerate = tolerate_changes
        self.split = split
        self.split_limit = split_limit
        self.start = start
        """The lower bound every request carries (None: none is sent)."""
        self.fetch = fetch
        self.order = ordering
        self.page_size = page_size
        self.expected_total = expected_total
        self.max_limit = max_limit
        self.seen: dict[Hashable, int] = {}
        """Every id yielded, with its second."""
        self.held: dict[Hashable, int] = {}
        """Rows of the oldest second of a full page: seen, not yet proven complete."""

    def pages(self) -> Iterator[list[R]]:
        yield from self._walk()
        self._check_total()

    def _window(self, end: int | None) -> Window:
        """A window ending at `end`, starting at the walk's floor (None: unbounded)."""
        return Window(start=self.start, end=end)

    def _walk(self) -> Iterator[list[R]]:
        cursor: int | None = None
        while True:
            rows = self._get(self._window(cursor), self.page_size)
            if len(rows) < self.page_size:
                yield from self._chunks(self._accept(rows, complete_below=None))
                self._probe_below(rows)
                return
            oldest = self.order.second_of(rows[-1])
            if self.order.second_of(rows[0]) == oldest:
                yield from self._chunks(self._boundary(oldest))
                if oldest == self.order.min_second:
                    return
                cursor = oldest - 1
            else:
                yield from self._chunks(self._accept(rows, complete_below=oldest))
                cursor = oldest

    def _probe_below(self, short: list[R]) -> None:
        """A short answer claims its window is exhausted: ask below its oldest row once.
        Anything there means answers are cut below their limit (a proxy, a lost `limit`)."""
        if not short:
            return
        oldest = self.order.second_of(short[-1])
        if oldest == self.order.min_second:
            return
        window = self._window(oldest - 1)
        older = self._get(window, self.page_size)
        if older:
            raise IncompleteListing(
                f"Listing {self.order.what}: an answer of {len(short)} rows, fewer than its "
                f"limit, ended at second {oldest}, yet the server has rows in {window}: "
                "answers are cut below their limit (a proxy in between, or a server that "
                "ignores `limit`). Point REFLEXIO_URL at the Reflexio server itself."
            )

    def _check_total(self) -> None:
        if self.tolerate:  # rows may leave during the walk; the delta's count check decides
            return
        if self.expected_total is not None and len(self.seen) < self.expected_total:
            raise IncompleteListing(
                f"Listing {self.order.what}: {len(self.seen)} rows listed, fewer than the "
                f"{self.expected_total} expected: answers were cut, or rows were deleted "
                f"during the listing. {_RETRY}"
            )

    def _boundary(self, second: int) -> list[R]:
        """Every row of one second, fetched alone with a limit that proves completeness, or
        split by another column when it holds more rows than one answer carries."""
        cap = self.max_limit if self.split is None else min(self.max_limit, self.split_limit)
        limit = self._boundary_limit()
        if self.split is not None and self.expected_total is not None and limit > cap:
            # counted too many for one answer: split at once
            return self._accept(self._split_second(second), complete_below=None)
        window = Window(second, second)
        limit = min(cap, limit)
        while True:
            rows = self._get(window, limit)
            if len(rows) < limit:
                return self._accept(rows, complete_below=None)
            if limit >= cap and self.split is not None:
                return self._accept(self._split_second(second), complete_below=None)
            if limit >= cap:
                raise IncompleteListing(
                    f"Listing {self.order.what}: second {second} alone holds at least "
                    f"{limit} rows, the hard maximum of one request, so it cannot be proven "
                    "complete. Raise max_limit, or split the listing by user_id or source."
                )
            limit = min(cap, limit * 8)

    def _split_second(self, second: int) -> list[R]:
        """Every row of `second`, read in windows of the split column that together cover
        all its values: downwards from `second`, then upwards from it."""
        found: dict[Hashable, R] = {}
        self._gallop(second, -1, found)
        self._gallop(second, +1, found)
        return list(found.values())

    def _gallop(self, second: int, step: int, found: dict[Hashable, R]) -> None:
        """Walk the split column from `second` in direction `step` (-1 down, +1 up) to its
        open end in windows that answer short, each sized from the last one's rows (aiming
        at half an answer); a full answer is retried half as wide. Neighbouring windows
        share their edge second: the server compares the column as text, so a value with a
        fraction of that second is inside one of the two (rows met twice count once)."""
        assert self.split is not None
        edge, width = second, SPLIT_WIDTH_S
        while True:
            far = edge + step * width
            far_bound = far if SPLIT_FLOOR <= far <= SPLIT_CEILING else None
            window = Window(far_bound, edge) if step < 0 else Window(edge, far_bound)
            rows = self._get(window, self.split_limit, self.split)
            if len(rows) >= self.split_limit:
                if width <= 1:  # windows share their edge second: one this narrow is the last
                    raise IncompleteListing(
                        f"Listing {self.order.what}: second {second} holds more rows than one "
                        f"answer carries ({self.split_limit}), and so does {self.split.column} "
                        f"window {window}, so it cannot be proven complete. Raise split_limit."
                    )
                width //= 2
                continue
            for row in rows:
                if self.order.second_of(row) == second:
                    found[self.order.id_of(row)] = row
            if far_bound is None:
                return
            edge = far
            aimed = width * (self.split_limit // 2) // max(1, len(rows))
            width = max(1, min(width * 16, aimed))  # never 0: a short window moves on

    def _boundary_limit(self) -> int:
        if self.expected_total is None:
            return self.max_limit
        remaining = self.expected_total - len(self.seen)
        return min(self.max_limit, max(self.page_size, remaining) + 1)

    def _get(self, window: Window, limit: int, split: Split[R] | None = None) -> list[R]:
        """One checked answer; with `split`, `window` is on the split column."""
        rows = list((split or self).fetch(window, limit))
        self._check_answer(rows, window, limit, split)
        return rows

    def _accept(self, rows: list[R], complete_below: int | None) -> list[R]:
        """New rows of a checked answer. With `complete_below`, rows of that (oldest) second
        are held back: the next answer must show them again, then they are yielded."""
        self._release_held(rows)
        fresh: list[R] = []
        for row in rows:
            key, second = self.order.id_of(row), self.order.second_of(row)
            if key in self.seen and not self.tolerate:
                self._changed(key, self.seen[key], second)
            if second == complete_below:
                self.held[key] = second
            else:
                self.seen[key] = second
                fresh.append(row)
        return fresh

    def _release_held(self, rows: list[R]) -> None:
        """Rows held back from the previous page must all come again in this answer."""
        present = {self.order.id_of(row) for row in rows}
        missing = [key for key in self.held if key not in present]
        if missing and not self.tolerate:
            raise IncompleteListing(
                f"Listing {self.order.what}: {len(missing)} row(s) of second "
                f"{self.held[missing[0]]} (e.g. id {missing[0]!r}) were in one page and gone "
                f"from the next: they were deleted or modified during the listing. {_RETRY}"
            )
        self.held.clear()

    def _changed(self, key: Hashable, before: int, now: int) -> None:
        raise IncompleteListing(
            f"Listing {self.order.what}: id {key!r} came twice (second {before}, then "
            f"{now}): the data changed during the listing or the server repeats rows. "
            f"{_RETRY}"
        )

    def _check_answer(
        self, rows: list[R], window: Window, limit: int, split: Split[R] | None = None
    ) -> None:
        """The server's promises: at most `limit` rows, inside the window (unchecked for a
        window of the split column, which rows do not carry), sorted, unique."""
        column = f" of {split.column}" if split else ""
        what = f"Listing {self.order.what}: the answer for window{column} {window}, limit {limit}"
        if len(rows) > limit:
            raise IncompleteListing(
                f"{what} has {len(rows)} rows, more than asked: something between us and "
                "the server rewrites requests. Check REFLEXIO_URL points at the server."
            )
        previous: tuple[Any, ...] | None = None
        ids: set[Hashable] = set()
        for position, row in enumerate(rows):
            second = self.order.second_of(row)
            if split is None and not self._inside(second, window):
                raise IncompleteListing(
                    f"{what} holds a row at second {second!r} (position {position}), outside "
                    "the window: the server ignored the window, so no page can be trusted. "
                    "Check that the server is reflexio-ai 0.2.32 compatible."
                )
            rank = self._rank(row)
            if previous is not None and rank > previous:
                raise IncompleteListing(
                    f"{what} is not sorted newest first (position {position}: {rank} after "
                    f"{previous}), so a cut page cannot be told apart from a complete one. "
                    "Check that the server is reflexio-ai 0.2.32 compatible."
                )
            previous = rank
            key = self.order.id_of(row)
            if key in ids:
                raise IncompleteListing(
                    f"{what} repeats id {key!r}; the server's answer cannot be trusted. "
                    "Check the server log."
                )
            ids.add(key)

    def _inside(self, second: object, window: Window) -> bool:
        if not isinstance(second, int) or not window.holds(second):
            return False
        return self.order.min_second is None or second >= self.order.min_second

    def _rank(self, row: R) -> tuple[Any, ...]:
        second = self.order.second_of(row)
        if self.order.tiebreak is None:
            return (second,)
        return (second, self.order.tiebreak(row))

    def _chunks(self, rows: list[R]) -> Iterator[list[R]]:
        for start in range(0, len(rows), self.page_size):
            yield rows[start : start + self.page_size]


def _bound(value: int | None) -> str:
    return "open" if value is None else str(value)
