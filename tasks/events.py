"""Emit the pipelines' Prefect events (names in deployments/catalogue.py), so automations
can hang off them.

Every event's resource is the Reflexio server: `reflexio.server.<host:port>`.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from core.identity import resource_id, server_key


def emit(event: str, server_url: str, **payload: Any) -> None:
    """Emit `event` about the server at `server_url` (payload: plain JSON values, no secrets)."""
    emit_event(
        event,
        resource={
            "prefect.resource.id": resource_id(server_url),
            "prefect.resource.name": server_key(server_url),
        },
        payload=payload,
    )
