"""Small JSON documents a writer keeps on the Prefect API, as Secret blocks named per
server: the prompt check's record (tasks/check_record.py) and the run journal
(tasks/journal.py). Found from any machine that uses the same Prefect API; a Secret because
they may name credentials or backup locations, which the UI then shows obfuscated."""

from __future__ import annotations

from typing import Any

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from prefect.exceptions import ObjectNotFound


def save_secret(name: str, text: str) -> None:
    """Store (or replace) the document `name`. A replacement reads the document and updates
    it: two API calls where `Secret.save(overwrite=True)` makes five (block type, schema, a
    refused create, a read, the update); a run saves its journal three times."""
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=False)
        except ObjectNotFound:
            Secret(value=text).save(name)
            return
        client.update_block_document(
            document.id, BlockDocumentUpdate(data={"value": text}, merge_existing_data=False)
        )


def load_secret(name: str) -> str | dict[str, Any] | None:
    """The stored document `name` ('' when it holds nothing readable); None when absent."""
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=True)
        except ObjectNotFound:
            return None
    stored = (document.data or {}).get("value")
    return stored if isinstance(stored, str | dict) else ""


def delete_secret(name: str) -> None:
    """Remove the document `name` (a missing one is fine)."""
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "secret", include_secrets=False)
            client.delete_block_document(document.id)
        except ObjectNotFound:
            return
