"""Is a listing complete? Checked against the server's own counts where it keeps them.

`get_profile_statistics` counts the profiles per status whose expiration_timestamp is not
in the past (reflexio-ai 0.2.32, sqlite_storage/_extras.py), while listings return expired
rows too. A listing is proven complete when its unexpired rows per status equal the counts
read before and after it (the server did not change while it was read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.kinds import Status, row_status
from core.state import Counts


class ListingNotProven(RuntimeError):
    """A listing could not be proven complete; nothing was written."""


@dataclass
class CountedRows:
    """Unexpired rows per status as the statistics endpoint would count them at `now`."""

    now: int
    per_status: dict[Status, int] = field(
        default_factory=lambda: {"current": 0, "pending": 0, "archived": 0}
    )

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count a page of profile rows."""
        for row in rows:
            status = row_status(row)
            expires = row.get("expiration_timestamp")
            if status is not None and expires is not None and expires >= self.now:
                self.per_status[status] += 1

    def counts(self) -> Counts:
        """The counts in the statistics' shape."""
        return Counts(**self.per_status)


def check_against_statistics(
    what: str, listed: Counts, before: Counts, after: Counts, statuses: Iterable[Status]
) -> None:
    """Raise ListingNotProven unless, for every listed status, the statistics read before
    and after the listing agree with each other and with the rows listed."""
    problems = []
    for status in statuses:
        want_before, want_after = getattr(before, status), getattr(after, status)
        got = getattr(listed, status)
        if want_before != want_after:
            problems.append(
                f"{status}: the server's count changed from {want_before} to {want_after} "
                "while it was listed"
            )
        elif got != want_after:
            problems.append(
                f"{status}: listed {got} unexpired row(s), the server counts {want_after}"
            )
    if problems:
        raise ListingNotProven(
            f"Could not prove the listing of {what} complete: {'; '.join(problems)}. Nothing "
            "was written. If the server was busy (live traffic, another writer), run again; "
            "if the numbers still differ, the server's listing is cutting rows: do not "
            "regenerate until it is understood."
        )


def check_delta_against_statistics(
    what: str,
    held: Counts,
    moved_out: Counts,
    after: Counts,
    statuses: Iterable[Status],
) -> None:
    """Raise ListingNotProven unless, for every listed status, the rows a snapshot-plus-delta
    pass holds unexpired plus the rows it saw leave that status reach the count the
    statistics gave between its snapshot and its delta (see core/delta.py for why)."""
    problems = []
    for status in statuses:
        got, left, want = getattr(held, status), getattr(moved_out, status), getattr(after, status)
        if got + left < want:
            problems.append(
                f"{status}: {got} unexpired row(s) listed and {left} seen leaving it during "
                f"the pass, but the server counted {want}: {want - got - left} row(s) missing"
            )
    if problems:
        raise ListingNotProven(
            f"Could not prove the listing of {what} complete: {'; '.join(problems)}. This "
            "read wrote nothing. Rows the server counts are missing from its listing, which "
            "happens when answers are cut (a proxy or gateway between this worker and the "
            "server, or a server that ignores `limit`): point REFLEXIO_URL at the Reflexio "
            "server itself. If a user's rows were written twice within seconds while the "
            "read ran, reading again succeeds; if the numbers still differ, do not "
            "regenerate until it is understood."
        )
