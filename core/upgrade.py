"""An upgrade whose answer was lost: did it apply, not apply, or is it still running?

An upgrade is never sent again while it may have applied or may still run. After a
timeout, a 5xx or an unreadable answer the PENDING count is read until it tells: 0 means
applied; fewer than before means the server is still promoting; the same count read
QUIET_READS times in a row from a server that answers means it did not apply (only then may
it be sent again). A server that does not answer is taken to be busy with the upgrade
(reflexio-ai 0.2.32 serialises its storage calls, so reads wait while an upgrade runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

QUIET_READS = 3

Resolution = Literal["applied", "not_applied", "running"]


class UpgradeUndetermined(RuntimeError):
    """The upgrade's answer was lost and the state did not settle in time."""


def resolve(pending_before: int, pending_reads: Sequence[int | None]) -> Resolution:
    """What the PENDING counts read since the lost answer say (None: no answer)."""
    if not pending_reads:
        return "running"
    last = pending_reads[-1]
    if last == 0 and pending_before > 0:
        return "applied"
    quiet = pending_reads[-QUIET_READS:]
    if len(quiet) == QUIET_READS and all(n == pending_before for n in quiet):
        return "not_applied"
    return "running"
