"""A writer that lost the server's lock must not touch the run journal: by then it may be
another writer's. PrefectJournal asks its guard before every save and removal."""

from __future__ import annotations

import pytest

import tasks.journal as journal_module
from core.journal import RunJournal
from tasks.journal import PrefectJournal

URL = "http://127.0.0.1:8081"
ENTRY = RunJournal(server="127.0.0.1:8081", flow_run_id="run-1", kind="profiles", written_at=1)


class Lost(RuntimeError):
    pass


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What reached the Prefect API's Secret blocks."""
    calls: list[str] = []
    monkeypatch.setattr(journal_module, "save_secret", lambda name, text: calls.append("save"))
    monkeypatch.setattr(journal_module, "delete_secret", lambda name: calls.append("delete"))
    return calls


def test_a_held_lock_saves_and_removes(stored: list[str]) -> None:
    sink = PrefectJournal(URL, lambda: None)
    sink.save(ENTRY)
    sink.clear()
    assert stored == ["save", "delete"]


def test_a_lost_lock_neither_saves_nor_removes(stored: list[str]) -> None:
    def lost() -> None:
        raise Lost("the server lock was lost")

    sink = PrefectJournal(URL, lost)
    with pytest.raises(Lost):
        sink.save(ENTRY)
    with pytest.raises(Lost):
        sink.clear()
    assert stored == []
