"""An unfinished writer (a regeneration, restore, clear-user-data or sweep) is finished or
undone before any other work on its server.

A regeneration keeps a journal on the Prefect API (core/journal.py, tasks/journal.py) from
its first write until the server is consistent again. A journal found by a run that has
just taken the server's lock (flows/lock.py calls `repair_on_lock` there, so every
writer does this first) belongs to a run that died: SIGKILLed, cancelled from the UI, timed
out, its lease lost, or ended with something left to repair. The run then stands in for it
(a regeneration, `Engine.resume`: its rerun stopped, its candidate cleaned up, its upgrade
established from the server and undone only where it did anything; a restore or
clear-user-data run: run again; a sweep: finished, flows/sweep_repair.py), says so in its
log, final message and a `reflexio.run.repaired` event, and removes the journal. When the
repair cannot be finished the journal stays and the run ends without writing anything else
(RunNotRepaired).
"""

from __future__ import annotations

from collections.abc import Callable

from core.journal import JournalError, RunJournal
from core.kinds import PROFILES, Kind, user_playbooks
from core.regeneration import Engine
from deployments import catalogue
from flows.check_repair import repair_unfinished_check
from flows.params import PlaybookRegenerationParams, RegenerationParams
from flows.stored_repair import NotRepaired, StoredRepair
from reflexio_api import ReflexioError
from tasks import events
from tasks.backups import folder_of
from tasks.journal import delete_journal, load_journal
from tasks.ops import PrefectOps
from tasks.report import RunSummary
from tasks.settings import reflexio_settings


class RunNotRepaired(NotRepaired):
    """An unfinished regeneration on this server could not be repaired; nothing else ran."""


def _engine(url: str, journal: RunJournal, before_write: Callable[[], None]) -> Engine:
    """An engine standing in for the run the journal describes."""
    kind: Kind
    params: RegenerationParams
    common = {"reflexio_url": url, "backup_dir": folder_of(journal.backup)}
    if journal.kind == "profiles":
        kind = PROFILES
        params = RegenerationParams(only_affected_users=journal.only_affected_users, **common)
    else:
        assert journal.agent_version is not None
        kind = user_playbooks(journal.agent_version)
        params = PlaybookRegenerationParams(agent_version=journal.agent_version, **common)
    summary = RunSummary(title="Repair of an unfinished run", server=url)
    return Engine(
        PrefectOps(reflexio_settings(url), kind, None, before_write),
        params,
        summary,
        journal.flow_run_id,
    )


def _run_again(url: str, journal: RunJournal) -> tuple[str, bool]:
    """Run the dead restore or clear-user-data again (inside this hold of the lock); what it
    said, and whether it is still unfinished. Imported here: both flows import flows.lock,
    which imports this module."""
    if journal.kind == "restore":
        from flows.restore import restore_profiles

        state = restore_profiles(reflexio_url=url, **journal.parameters, return_state=True)
    else:
        from flows.clear_users import clear_users

        state = clear_users(reflexio_url=url, **journal.parameters, return_state=True)
    return f"ran it again: {state.message}", not state.is_completed()


def _repair(url: str, journal: RunJournal, before_write: Callable[[], None]) -> tuple[str, bool]:
    """Finish or undo the dead run, by its kind: what was done, and whether it is still
    unfinished."""
    if journal.kind == "sweep":
        from flows.sweep_repair import finish_sweep  # flows.sweep imports flows.lock

        return finish_sweep(url, journal)
    if journal.runs_again:
        return _run_again(url, journal)
    engine = _engine(url, journal, before_write)
    return engine.resume(journal), engine.left_unfinished


def _repair_and_say(
    url: str, journal: RunJournal, before_write: Callable[[], None]
) -> tuple[str, bool]:
    """Repair the dead run and say so in an event: what was done, and whether it is all."""
    try:
        done, unfinished = _repair(url, journal, before_write)
    except (ReflexioError, RuntimeError, ValueError) as exc:
        done, unfinished = f"the repair stopped: {exc}", True
    events.emit(
        catalogue.EVENT_RUN_REPAIRED,
        url,
        run_flow_run_id=journal.flow_run_id,
        kind=journal.kind,
        step=journal.step if journal.kind in ("profiles", "user_playbooks") else None,
        complete=not unfinished,
    )
    return done, not unfinished


def repair_unfinished_run(url: str, before_write: Callable[[], None]) -> str | None:
    """Finish or undo the unfinished writer on this server, if there is one (the caller
    holds the server's lock; `before_write` raises once it is lost). Returns what was done
    (None: there was none); RunNotRepaired when it could not be done."""
    return StoredRepair[RunJournal](
        noun="journal",
        verbs=("repairing", "repaired", "Repaired"),
        block=catalogue.run_journal_block(url),
        load=lambda: load_journal(url),
        unreadable=JournalError,
        describe=RunJournal.describe,
        act=lambda journal: _repair_and_say(url, journal, before_write),
        forget=lambda: delete_journal(url),
        by_hand=RunJournal.by_hand,
        refused=RunNotRepaired,
    ).run()


def repair_on_lock(url: str, before_write: Callable[[], None]) -> str | None:
    """What every writer does first under the server's lock: the run journal, then a prompt
    check's record (a check's undo may run a restore, which journals: the journal must be
    settled first). What was repaired (None: nothing); NotRepaired when it could not be."""
    done = [repair_unfinished_run(url, before_write), repair_unfinished_check(url)]
    return " ".join(filter(None, done)) or None
