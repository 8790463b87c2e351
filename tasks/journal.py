"""Where the run journal lives: a Secret block on the Prefect API, one per server.

Named from the server's identity like its lock (`deployments.catalogue.run_journal_block`),
so every writer of that server finds it from any machine that uses the same Prefect API.
A Secret block like the prompt check's record: it names backup locations, which may hold a
bucket or block name an operator would rather not show.
"""

from __future__ import annotations

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from core.journal import RunJournal
from deployments.catalogue import run_journal_block


def save_journal(url: str, journal: RunJournal) -> None:
    """Store (or replace) the server's journal, before the step it describes."""
    Secret(value=journal.to_json()).save(run_journal_block(url), overwrite=True)


def load_journal(url: str) -> RunJournal | None:
    """The server's journal; None when no run is unfinished. JournalError when unreadable."""
    name = run_journal_block(url)
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=True)
        except ObjectNotFound:
            return None
    stored = (document.data or {}).get("value")
    return RunJournal.from_json(stored if isinstance(stored, str | dict) else "", name)


def delete_journal(url: str) -> None:
    """Remove the server's journal (a missing one is fine)."""
    name = run_journal_block(url)
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=False)
            client.delete_block_document(document.id)
        except ObjectNotFound:
            return


class PrefectJournal:
    """The engine's journal sink on the Prefect API for one server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def save(self, journal: RunJournal) -> None:
        save_journal(self.url, journal)

    def clear(self) -> None:
        delete_journal(self.url)
