"""An unfinished prompt check is undone when a writer takes the server's lock, against a
throwaway Prefect API (the record's real home) and an in-memory server."""

from __future__ import annotations

import itertools

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client

from core.check_record import CheckRecord
from deployments.catalogue import check_record_block
from flows import check_repair
from flows.lock import server_lock
from flows.params import RestoreParams
from flows.restore import restore_profiles
from tasks.check_record import delete_record, load_record, save_record
from tests.unit.core.test_check_undo import ORIGINAL, Server, record
from tests.unit.flows.test_lock import WRITERS, _active_slots

_PORTS = itertools.count(1901)


@pytest.fixture
def url() -> str:
    """A server of this test alone; nothing listens there."""
    return f"http://127.0.0.1:{next(_PORTS)}"


def test_the_record_is_a_secret_block_that_reads_back_equal(prefect_api, url) -> None:
    check = record()
    save_record(url, check)
    assert load_record(url.replace("127.0.0.1", "localhost")) == check  # one server, one name
    with get_client(sync_client=True) as client:
        shown = client.read_block_document_by_name(
            check_record_block(url), "secret", include_secrets=False
        )
    assert "api_key" not in str(shown.data)  # the UI sees it obfuscated
    delete_record(url)
    assert load_record(url) is None
    delete_record(url)  # a missing record is fine


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_first_undoes_an_unfinished_check_or_stops(
    prefect_api, url, tmp_path, writer
) -> None:
    """A record no run can read: each writer meets it right after taking the lock, and
    stops there, naming it, without a single call to the server."""
    Secret(value="not a record").save(check_record_block(url), overwrite=True)

    state = WRITERS[writer](url, tmp_path)

    assert state.is_failed(), state.message
    assert f"record '{check_record_block(url)}' cannot be read" in state.message, state.message
    assert "holds its lock" not in state.message
    assert _active_slots(url) == 0  # the refused writer let go of the lock


def test_a_writer_undoes_the_check_says_so_and_removes_the_record(
    prefect_api, url, tmp_path, monkeypatch
) -> None:
    server = Server(profiles={"old-1": "current", "new-1": "pending"})
    monkeypatch.setattr(check_repair, "PrefectCheckOps", lambda settings: server)
    save_record(url, record())
    events: list[dict] = []
    monkeypatch.setattr(check_repair.events, "emit", lambda name, u, **p: events.append(p))

    state = restore_profiles(
        reflexio_url=url,
        backup_file=tmp_path / "none.manifest.json",
        return_state=True,
    )

    assert state.message.startswith("Undid an unfinished prompt check (flow run run-1)")
    assert "put the original config back; deleted its 1 PENDING profile(s)" in state.message
    assert server.config == ORIGINAL and server.profiles == {"old-1": "current"}
    assert load_record(url) is None
    assert events == [
        {
            "check_flow_run_id": "run-1",
            "complete": True,
            "done": ["put the original config back", "deleted its 1 PENDING profile(s)"],
            "left": [],
        }
    ]
    assert "storage_config" not in state.message


def test_an_undo_that_cannot_finish_keeps_the_record_and_stops_the_writer(
    prefect_api, url, tmp_path, monkeypatch
) -> None:
    server = Server(profiles={"new-1": "pending"}, fail_on="delete_profiles")
    monkeypatch.setattr(check_repair, "PrefectCheckOps", lambda settings: server)
    monkeypatch.setattr(check_repair.events, "emit", lambda *a, **p: None)
    save_record(url, record())

    state = restore_profiles(
        reflexio_url=url,
        backup_file=tmp_path / "none.manifest.json",
        return_state=True,
    )

    assert state.is_failed()
    assert "could not be undone" in state.message and "Nothing else was done" in state.message
    assert "delete_profiles failed" in state.message
    assert isinstance(load_record(url), CheckRecord)
    assert server.config == ORIGINAL  # what could be undone was


def test_a_nested_hold_does_not_undo_twice(prefect_api, url, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(check_repair, "load_record", lambda u: calls.append(u))
    with server_lock(url, 5), server_lock(url, 5):
        pass
    assert calls == [url]


def test_another_servers_record_is_left_alone(prefect_api, url) -> None:
    save_record(url, record())
    other = f"http://127.0.0.1:{next(_PORTS)}"
    with server_lock(other, 5) as held:
        assert held.repaired is None
    assert load_record(url) is not None


def test_the_undo_restores_only_after_an_upgrade_that_was_sent(tmp_path, monkeypatch) -> None:
    """A regeneration writes the touched-ids file before it sends the upgrade: without it,
    nothing is restored (a restore would refuse such a backup); with it, the restore runs on
    the check's own records location, a missing erasure record accepted."""
    from prefect.states import Completed

    import flows.restore
    from reflexio_api import ReflexioSettings

    seen: list[RestoreParams] = []

    def restore(return_state: bool, **values: object) -> object:
        seen.append(RestoreParams(**values))
        return Completed(message="Restored")

    monkeypatch.setattr(flows.restore, "restore_profiles", restore)
    ops = check_repair.PrefectCheckOps(ReflexioSettings(url="http://127.0.0.1:1"))
    backup = tmp_path / "profiles-x.manifest.json"
    backup.write_text("{}")

    assert "its upgrade was never sent, nothing to restore" in ops.restore_profiles(str(backup))
    assert seen == []

    (tmp_path / "profiles-x.touched.json.gz").write_bytes(b"")
    assert ops.restore_profiles(str(backup)) == "Restored"
    assert [(p.records_dir, p.assume_no_erasures, p.recreate_missing) for p in seen] == [
        (str(tmp_path), True, False)
    ]
