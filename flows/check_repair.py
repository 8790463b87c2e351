"""An unfinished prompt check is undone before any other work on its server.

A prompt check stores a record on the Prefect API before it applies its candidate config
(tasks/check_record.py) and removes it when it finishes. A record found by a run that has
just taken the server's lock (flows/lock.py calls `repair_on_lock` there, so every
writer does this first) belongs to a check that died: a check holds that lock for as long
as its record exists. The run then undoes the check (core/check_undo.py: original config
back, the check's reruns stopped, its PENDING rows gone, tombstoned playbooks put back, an
upgrade it may have made restored from its backup), says so in its log, its final message
or summary and a `reflexio.prompt-check.undone` event, and removes the record. When the undo
cannot be finished the record stays and the run ends without writing (CheckNotRepaired).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.check_record import CheckRecord, RecordError
from core.check_undo import RunningRerun, Undo, undo_check
from core.touched import touched_name
from deployments import catalogue
from flows.stored_repair import NotRepaired, StoredRepair
from reflexio_api import ReflexioSettings
from reflexio_api.models import ServiceName
from tasks import events
from tasks.backups import file_exists, folder_of
from tasks.check_record import delete_record, load_record
from tasks.config import put_config_back, read_config
from tasks.server import (
    RECREATE_BATCH,
    add_user_playbooks,
    cancel_rerun,
    delete_profiles_in_batches,
    delete_user_playbooks_in_batches,
    find_running_operation,
    in_batches,
    list_profiles,
    list_user_playbooks,
)
from tasks.settings import reflexio_settings


class CheckNotRepaired(NotRepaired):
    """An unfinished prompt check on this server could not be undone; nothing else ran."""


@dataclass
class PrefectCheckOps:
    """core.check_undo.CheckOps as Prefect tasks on one server."""

    settings: ReflexioSettings

    def set_config(self, config: Mapping[str, Any]) -> None:
        put_config_back(self.settings, config)

    def get_config(self) -> Mapping[str, Any]:
        return read_config(self.settings)

    def running_rerun(self, service: str) -> RunningRerun | None:
        status = find_running_operation(self.settings, _service(service))
        if status is None:
            return None
        return RunningRerun(status.operation_id or "", status.started_at)

    def cancel_rerun(self, service: str, operation_id: str) -> bool:
        cancel_rerun(self.settings, _service(service), operation_id)
        return self.running_rerun(service) is None

    def pending_profiles(self) -> set[str]:
        return {r["profile_id"] for r in list_profiles(self.settings, "pending")}

    def delete_profiles(self, ids: Collection[str]) -> int:
        return delete_profiles_in_batches(self.settings, sorted(ids))

    def backup_readable(self, backup: str) -> bool:
        return file_exists(backup)

    def restore_profiles(self, backup: str) -> str:
        # flows.restore imports flows.lock, which imports this module: import it here.
        from flows.restore import restore_profiles

        # A regeneration writes the touched-ids file beside its backup before it sends the
        # upgrade: without it, the check's upgrade never reached the server.
        if not file_exists(touched_name(backup)):
            return (
                f"no touched-ids file beside {backup}: its upgrade was never sent, "
                "nothing to restore"
            )
        # Erasure records: none can be newer than the check (clear-user-data undoes a dead
        # check before it erases), so the backup's own location serves, and having none
        # there is accepted. Users erased through the API directly are still not brought
        # back: the restore re-creates only rows the check's upgrade deleted, never those
        # of a user who has no row left on the server.
        state = restore_profiles(
            backup_file=backup,
            reflexio_url=self.settings.url,
            records_dir=folder_of(backup),
            assume_no_erasures=True,
            return_state=True,
        )
        if not state.is_completed():
            raise RuntimeError(f"the restore from {backup} did not finish: {state.message}")
        return str(state.message)

    def playbooks(self, agent_version: str) -> list[dict[str, Any]]:
        return list_user_playbooks(self.settings, agent_version)

    def delete_playbooks(self, ids: Collection[str]) -> int:
        return delete_user_playbooks_in_batches(self.settings, sorted(int(i) for i in ids))

    def recreate_playbooks(self, rows: Sequence[Mapping[str, Any]]) -> int:
        batches = in_batches((dict(r) for r in rows), RECREATE_BATCH)
        return sum(add_user_playbooks(self.settings, b) for b in batches)


def _service(name: str) -> ServiceName:
    if name not in ("profile_generation", "playbook_generation"):
        raise ValueError(f"not a generation service: {name}")
    return name  # type: ignore[return-value]


def undo_and_forget(url: str, record: CheckRecord) -> Undo:
    """Undo the check and, when that is complete, remove its record."""
    undo = undo_check(PrefectCheckOps(reflexio_settings(url)), record)
    if undo.complete:
        delete_record(url)
    return undo


def _undo(url: str, record: CheckRecord) -> tuple[str, bool]:
    """Undo the dead check and say so in an event: what was done, and whether it is all."""
    undo = undo_check(PrefectCheckOps(reflexio_settings(url)), record)
    events.emit(
        catalogue.EVENT_CHECK_UNDONE,
        url,
        check_flow_run_id=record.flow_run_id,
        complete=undo.complete,
        done=undo.done,
        left=undo.left,
    )
    return undo.sentence(), undo.complete


def repair_unfinished_check(url: str) -> str | None:
    """Undo the unfinished prompt check on this server, if there is one (the caller holds the
    server's lock). Returns what was done (None: there was none); CheckNotRepaired when the
    check could not be undone."""
    return StoredRepair[CheckRecord](
        noun="record",
        verbs=("undoing", "undone", "Undid"),
        block=catalogue.check_record_block(url),
        load=lambda: load_record(url),
        unreadable=RecordError,
        describe=CheckRecord.describe,
        act=lambda record: _undo(url, record),
        forget=lambda: delete_record(url),
        refused=CheckNotRepaired,
    ).run()
