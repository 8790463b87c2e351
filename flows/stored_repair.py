"""What the two repairs a writer runs on taking a server's lock share.

A writer that dies leaves a record on the Prefect API: the run journal (core/journal.py;
flows/run_repair.py finishes or undoes the run) or a prompt check's record
(core/check_record.py; flows/check_repair.py undoes the check). Both are handled the same
way: an unreadable one stops the writer, naming it; a readable one is acted on and said in
the log; once that is complete the record is removed and the writer goes on with what was
done in its final message, otherwise the record is kept for the next writer and this one
stops (`NotRepaired`) without writing anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

R = TypeVar("R")


class NotRepaired(RuntimeError):
    """An unfinished writer on this server could not be repaired; nothing else ran."""


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger, or the module's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredRepair(Generic[R]):
    """One kind of record a dead writer leaves, and how it is repaired."""

    noun: str
    """What the record is called in sentences: "journal", "record"."""
    verbs: tuple[str, str, str]
    """How the repair is said: ("repairing", "repaired", "Repaired")."""
    block: str
    """The Secret block it is stored in."""
    load: Callable[[], R | None]
    """The stored record (None: no writer is unfinished)."""
    unreadable: type[ValueError]
    """What `load` raises, naming what to do, when the record cannot be read."""
    describe: Callable[[R], str]
    act: Callable[[R], tuple[str, bool]]
    """Repair it: what was done, and whether that is complete."""
    forget: Callable[[], None]
    by_hand: Callable[[R], str] = lambda _: ""
    """What finishes it by hand, when the repair could not ("": nothing to add)."""
    refused: type[NotRepaired] = NotRepaired

    def run(self) -> str | None:
        """Repair the record if there is one: what was done (None: there was none);
        `refused` when it could not be read or the repair is not complete."""
        ing, ed, said = self.verbs
        try:
            found = self.load()
        except self.unreadable as exc:
            raise self.refused(f"{exc} Nothing else was done.") from None
        if found is None:
            return None
        what = self.describe(found)
        run_logger().warning(
            "Found the %s of an unfinished %s (Secret block '%s'); %s it before anything else.",
            self.noun,
            what,
            self.block,
            ing,
        )
        done, complete = self.act(found)
        if not complete:
            hand = self.by_hand(found)
            message = (
                f"An unfinished {what} was found and could not be {ed}: {done} Its "
                f"{self.noun} (Secret block '{self.block}') is kept, so the next run tries "
                f"again{f'; to finish by hand, {hand}, then delete the block' if hand else ''}. "
                "Nothing else was done."
            )
            run_logger().error("%s", message)
            raise self.refused(message)
        self.forget()
        message = f"{said} an unfinished {what}: {done}"
        run_logger().warning("%s", message)
        return message
