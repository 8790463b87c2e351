"""Prefect events the pipelines emit, so automations can hang off them.

Every event's resource is the Reflexio server: `reflexio.server.<host:port>`.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from tasks.domain import resource_id, server_key

STALL_DETECTED = "reflexio.stall.detected"
GATE_PASSED = "reflexio.gate.passed"
GATE_FAILED = "reflexio.gate.failed"
UPGRADED = "reflexio.upgraded"
ROLLED_BACK = "reflexio.rolled-back"
RESTORED = "reflexio.restored"


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
