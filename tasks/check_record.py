"""Where a prompt check's record lives: a Secret block on the Prefect API, one per server.

The block (`deployments.catalogue.check_record_block`) is named from the server's identity,
like its lock, so every run on that server finds it, from any machine that uses the same
Prefect API. A Secret block because the record holds the server's original config, which
can carry credentials: the UI shows it obfuscated, and nothing here logs it.
"""

from __future__ import annotations

from core.check_record import CheckRecord
from deployments.catalogue import check_record_block
from tasks.secret_blocks import delete_secret, load_secret, save_secret


def save_record(url: str, record: CheckRecord) -> None:
    """Store (or replace) the server's record."""
    save_secret(check_record_block(url), record.to_json())


def load_record(url: str) -> CheckRecord | None:
    """The server's record; None when no check is unfinished. RecordError when unreadable."""
    name = check_record_block(url)
    stored = load_secret(name)
    return None if stored is None else CheckRecord.from_json(stored, name)


def delete_record(url: str) -> None:
    """Remove the server's record (a missing one is fine)."""
    delete_secret(check_record_block(url))
