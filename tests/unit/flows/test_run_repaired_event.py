"""The `reflexio.run.repaired` event says which kind of run was repaired, and a step only
where one means something (a regeneration's `candidate` / `upgrade`)."""

from __future__ import annotations

from typing import Any

import pytest

from core.journal import RunJournal
from deployments.catalogue import EVENT_RUN_REPAIRED
from flows import run_repair

URL = "http://127.0.0.1:8081"


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every event the repair emits, with the repair itself answering 'done, complete'."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        run_repair.events, "emit", lambda event, url, **payload: sent.append({event: payload})
    )
    monkeypatch.setattr(run_repair, "_repair", lambda url, journal, before_write: ("done", False))
    return sent


@pytest.mark.parametrize(
    ("kind", "step", "reported_step"),
    [
        ("profiles", "upgrade", "upgrade"),
        ("user_playbooks", "candidate", "candidate"),
        ("restore", "candidate", None),
        ("clear_users", "candidate", None),
        ("sweep", "candidate", None),
    ],
)
def test_the_event_names_the_kind_and_a_regenerations_step(
    emitted: list[dict[str, Any]], kind: str, step: str, reported_step: str | None
) -> None:
    journal = RunJournal(server="s", flow_run_id="run-1", kind=kind, written_at=1, step=step)

    assert run_repair._repair_and_say(URL, journal, lambda: None) == ("done", True)

    assert emitted == [
        {
            EVENT_RUN_REPAIRED: {
                "run_flow_run_id": "run-1",
                "kind": kind,
                "step": reported_step,
                "complete": True,
            }
        }
    ]
