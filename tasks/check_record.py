"""Where a prompt check's record lives: a Secret block on the Prefect API, one per server.

The block (`deployments.catalogue.check_record_block`) is named from the server's identity,
like its lock, so every run on that server finds it, from any machine that uses the same
Prefect API. A Secret block because the record holds the server's original config, which
can carry credentials: the UI shows it obfuscated, and nothing here logs it.
"""

from __future__ import annotations

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from core.check_record import CheckRecord
from deployments.catalogue import check_record_block


def save_record(url: str, record: CheckRecord) -> None:
    """Store (or replace) the server's record."""
    Secret(value=record.to_json()).save(check_record_block(url), overwrite=True)


def load_record(url: str) -> CheckRecord | None:
    """The server's record; None when no check is unfinished. RecordError when unreadable."""
    name = check_record_block(url)
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=True)
        except ObjectNotFound:
            return None
    stored = (document.data or {}).get("value")
    return CheckRecord.from_json(stored if isinstance(stored, str | dict) else "", name)


def delete_record(url: str) -> None:
    """Remove the server's record (a missing one is fine)."""
    name = check_record_block(url)
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=False)
            client.delete_block_document(document.id)
        except ObjectNotFound:
            return
