"""Where the run journal lives: a Secret block on the Prefect API, one per server
(`deployments.catalogue.run_journal_block`, named from the server's identity like its lock),
so every writer of that server finds it from any machine that uses the same Prefect API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from core.identity import server_key
from core.journal import RunJournal
from deployments.catalogue import run_journal_block
from tasks.secret_blocks import delete_secret, load_secret, save_secret


def save_journal(url: str, journal: RunJournal) -> None:
    """Store (or replace) the server's journal, before the step it describes."""
    save_secret(run_journal_block(url), journal.to_json())


def load_journal(url: str) -> RunJournal | None:
    """The server's journal; None when no run is unfinished. JournalError when unreadable."""
    name = run_journal_block(url)
    stored = load_secret(name)
    return None if stored is None else RunJournal.from_json(stored, name)


def delete_journal(url: str) -> None:
    """Remove the server's journal (a missing one is fine)."""
    delete_secret(run_journal_block(url))


def run_again_journal(
    url: str,
    kind: Literal["restore", "clear_users", "sweep"],
    flow_run_id: str,
    parameters: dict[str, Any],
) -> RunJournal:
    """The journal of a run its repair runs again from its own parameters."""
    return RunJournal(
        server=server_key(url),
        flow_run_id=flow_run_id,
        kind=kind,
        written_at=int(time.time()),
        parameters=parameters,
    )


def journal_run_again(
    url: str,
    kind: Literal["restore", "clear_users"],
    flow_run_id: str,
    parameters: dict[str, Any],
) -> None:
    """Before a restore's or a clear-user-data run's first write: what to run again (these
    plan from the server's rows each time) if the run dies on the way."""
    save_journal(url, run_again_journal(url, kind, flow_run_id, parameters))


class PrefectJournal:
    """A writer's journal sink on the Prefect API for one server. `before_write` runs
    before every save and removal (flows.lock.ensure_still_held: a run that lost the
    server's lock must not touch the journal, which may be another writer's by then)."""

    def __init__(self, url: str, before_write: Callable[[], None]) -> None:
        self.url = url
        self.before_write = before_write

    def save(self, journal: RunJournal) -> None:
        self.before_write()
        save_journal(self.url, journal)

    def clear(self) -> None:
        self.before_write()
        delete_journal(self.url)
