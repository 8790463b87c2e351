"""Events name the Reflexio server as their resource."""

from __future__ import annotations

import tasks.events as events
from deployments import catalogue


def test_emit_names_the_server(monkeypatch):
    seen = []
    monkeypatch.setattr(events, "emit_event", lambda event, **kw: seen.append((event, kw)))
    events.emit(
        catalogue.EVENT_GATE_FAILED, "http://127.0.0.1:8081", kind="profiles", verdict="fail"
    )
    event, kw = seen[0]
    assert event == "reflexio.gate.failed"
    assert kw["resource"]["prefect.resource.id"] == "reflexio.server.127.0.0.1:8081"
    assert kw["payload"] == {"kind": "profiles", "verdict": "fail"}
