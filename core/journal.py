"""The run journal: what a writer is about to do to a server, written before it does it,
so that the next writer can finish or undo it if the run dies.

One journal per server (one writer at a time holds the server's lock). A restore or a
clear-user-data run writes it before its first write, with the parameters to run it again:
both plan from the server's rows each time, so the repair finishes them by running them
again. A manual-generation sweep writes it before its first manual generation, with its
parameters, and records each step (source, kind, agent_version) as it starts and as it
ends: the repair waits for the generation a dead sweep left running on the server, then
runs the steps not done (flows/sweep_repair.py). A regeneration writes it before its first
write (the discard of stale PENDING rows, or the rerun), and again before it sends the
upgrade, each time with the evidence a repair needs:

- step "candidate": the run's backup (every row before it, so the CURRENT rows a playbook
  rerun tombstones, H6, can be put back) and, once started, the rerun's operation id. A
  repair stops that rerun if it still runs and leaves the candidate as a gate-blocked run
  leaves it (profiles: PENDING rows deleted; playbooks: tombstoned rows put back).
- step "upgrade": also the touched-ids file (what the upgrade promotes, archives, deletes)
  and the live-rows file. A repair reads the server, establishes what the upgrade did
  (core/rollback.py) and undoes only that; an upgrade that applied in full with nothing to
  keep CURRENT is kept and verified by id instead.

The journal is removed once the server is consistent again (upgraded and verified, the
candidate cleaned up, a rollback that left the rows as before); any other end (a SIGKILL,
a cancel, a flow timeout, a lost lease, a rollback that left residue, an upgrade whose
state did not settle) leaves it for the next writer. No Prefect here: where it is stored is
tasks/journal.py's business.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

JOURNAL_VERSION = 1

Step = Literal["candidate", "upgrade"]


class JournalSink(Protocol):
    """Where a run keeps its journal (tasks/journal.py: the Prefect API)."""

    def save(self, journal: RunJournal) -> None: ...
    def clear(self) -> None: ...


class JournalError(ValueError):
    """A stored journal that cannot be read; the message says what to do."""


@dataclass(frozen=True)
class RunJournal:
    """An unfinished regeneration of one kind on one server."""

    server: str
    """The server's key (core/identity.py)."""
    flow_run_id: str
    kind: Literal["profiles", "user_playbooks", "restore", "clear_users", "sweep"]
    written_at: int
    """Epoch seconds when the run first wrote it (before its first write)."""
    agent_version: str | None = None
    backup: str = ""
    """The backup manifest's location (path, URL or block:<name>/<file>)."""
    only_affected_users: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)
    """Restore, clear-user-data and the sweep: the run's own parameters (no server, no
    secret), to run it again."""
    step: Step = "candidate"
    operation_ids: tuple[str, ...] = ()
    """The reruns this run started (one per source)."""
    touched: str | None = None
    """The touched-ids file's location (step "upgrade")."""
    live: str | None = None
    """The live-rows file's location, when the run saved one (step "upgrade")."""
    swept: tuple[str, ...] = ()
    """Sweep: the steps that ended ok (`source/kind/agent_version`), never run again."""
    sweeping: str = ""
    """Sweep: the step whose manual generation was sent and has not ended ("": none)."""
    sweeping_since: int = 0
    """Sweep: the server's start time (epoch seconds) of the last operation in that step's
    slot before its generation was sent (0: none); only a later one can be this step's."""

    def started_rerun(self, operation_id: str) -> RunJournal:
        """The journal once a rerun has started."""
        return replace(self, operation_ids=(*self.operation_ids, operation_id))

    def upgrading(self, touched: str, live: str | None) -> RunJournal:
        """The journal before the upgrade is sent."""
        return replace(self, step="upgrade", touched=touched, live=live)

    def sweep_started(self, step: str, after: int) -> RunJournal:
        """The journal before a sweep step's manual generation is sent (`after`: see
        `sweeping_since`)."""
        return replace(self, sweeping=step, sweeping_since=after)

    def sweep_ended(self, step: str, ok: bool) -> RunJournal:
        """The journal once a sweep step has ended (ok: it is never run again)."""
        swept = (*self.swept, step) if ok and step not in self.swept else self.swept
        return replace(self, swept=swept, sweeping="", sweeping_since=0)

    @property
    def runs_again(self) -> bool:
        """A restore or clear-user-data run: repaired by running it again."""
        return self.kind in ("restore", "clear_users")

    def describe(self) -> str:
        """Which run, in words."""
        if self.kind == "restore":
            return f"restore-profiles (flow run {self.flow_run_id})"
        if self.kind == "clear_users":
            return f"clear-user-data (flow run {self.flow_run_id})"
        if self.kind == "sweep":
            return (
                f"manual-generation-sweep (flow run {self.flow_run_id}, "
                f"{len(self.swept)} step(s) done)"
            )
        what = "profile" if self.kind == "profiles" else f"{self.agent_version} playbook"
        return f"{what} regeneration (flow run {self.flow_run_id}, step {self.step})"

    def by_hand(self) -> str:
        """What an operator does to finish this run by hand, before deleting its journal."""
        if self.kind == "sweep":
            steps = ", ".join(self.swept) or "none"
            return (
                "wait until the server reports no generation in progress, then sweep again "
                f"(steps already done: {steps})"
            )
        if self.runs_again:
            return f"run it again with the parameters the journal keeps ({self.kind})"
        return f"restore from {self.backup}"

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"version": JOURNAL_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str | dict[str, Any], where: str) -> RunJournal:
        """Read a stored journal; JournalError when it is not one."""
        try:
            document = json.loads(text) if isinstance(text, str) else dict(text)
            if document.pop("version") != JOURNAL_VERSION:
                raise ValueError("unknown version")
            document["operation_ids"] = tuple(document.get("operation_ids", ()))
            document["swept"] = tuple(document.get("swept", ()))
            return cls(**document)
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalError(
                f"The run journal in {where} cannot be read ({exc}). Look at it, repair the "
                "server from the backup it names by hand if needed, then delete it; until "
                "then no writer runs on this server."
            ) from None
