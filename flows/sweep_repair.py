"""Finishing a manual-generation sweep that died (its run journal, kind "sweep").

What a repaired sweep does, run by the next writer on the server right after it takes the
lock (flows/run_repair.py):

1. The step the dead sweep had sent and not seen end (`journal.sweeping`): manual
   generation is synchronous on the server and goes on after its caller died, so the
   server's operation slot is read. A generation of that step still in progress is waited
   for (up to tasks.sweep.IDLE_WAIT_S; still running then: not repaired, journal kept, the
   next writer tries again); any other operation in progress on that slot is not ours:
   not repaired, journal kept. The step counts as done when the slot shows its generation
   completed after the step was sent; otherwise it is run again.
2. The sweep then runs as the dead one would have (stall check, prerequisites, the
   summary artifact), with its own parameters, skipping the steps the journal records as
   done, recording each step in the same journal as it goes, so that a repair that dies
   is finished by the next writer in turn.
3. The journal is removed once the sweep has tried every step, or was refused before its
   first generation (a stall, missing prerequisites): a sweep leaves nothing to undo, so
   a sweep that cannot go on must not hold up the other writers. The repair's message
   names the steps that failed or were not run; sweep again for those.
"""

from __future__ import annotations

from core.journal import RunJournal
from flows.params import SweepParams
from flows.sweep import PrefectSweepOps, SweepOps, planned_steps, run_sweep
from tasks.sweep import IDLE_WAIT_S, SERVICES, shows_step, step_key


class SweepUnsettled(RuntimeError):
    """The server still runs a generation: the sweep cannot go on yet."""


def settle_in_flight(
    ops: SweepOps, params: SweepParams, journal: RunJournal
) -> tuple[RunJournal, str]:
    """The journal once the step the dead sweep had sent has ended on the server, and what
    was found; SweepUnsettled when a generation is still in progress."""
    if not journal.sweeping:
        return journal, ""
    steps = (s for source in params.sources for s in planned_steps(params, source))
    step = next((s for s in steps if step_key(s) == journal.sweeping), None)
    if step is None:  # the parameters no longer plan it: nothing to wait for
        return journal.sweep_ended(journal.sweeping, ok=False), ""
    service = SERVICES[step.kind]
    status = ops.operation(service)
    waited = ""
    if status is not None and status.status == "in_progress":
        if not shows_step(status, step, journal.sweeping_since):
            raise SweepUnsettled(
                f"A {service} operation the sweep did not start is in progress "
                f"({status.request_params.get('mode', 'unknown mode')}); nothing was run. "
                "Run again when it has finished."
            )
        status = ops.wait_until_idle(service)
        if status is not None and status.status == "in_progress":
            raise SweepUnsettled(
                f"its manual generation of step {journal.sweeping} was still running after "
                f"{IDLE_WAIT_S:g} s; nothing was run. Run again when it has finished."
            )
        waited = f"waited for its manual generation of step {journal.sweeping} to end; "
    ran = status is not None and status.status == "completed"
    ran = ran and shows_step(status, step, journal.sweeping_since)
    found = (
        "it had completed on the server, not run again"
        if ran
        else "the server shows no completed generation of it, run again"
    )
    settled = journal.sweep_ended(journal.sweeping, ok=ran)
    ops.save(settled)
    return settled, f"{waited}step {journal.sweeping}: {found}; "


def finish_sweep(url: str, journal: RunJournal, ops: SweepOps | None = None) -> tuple[str, bool]:
    """Finish the dead sweep the journal describes (the caller holds the server's lock):
    what was done, and whether it is still unfinished (its journal then kept)."""
    params = SweepParams(reflexio_url=url, **journal.parameters)
    if ops is None:
        ops = PrefectSweepOps(params.settings(), params.notification_block)
    try:
        journal, settled = settle_in_flight(ops, params, journal)
    except SweepUnsettled as exc:
        return str(exc), True
    state = run_sweep(ops, params, journal)
    if state.is_completed():
        return f"{settled}ran the steps not done: {state.message}", False
    return (
        f"{settled}the steps not done did not all run: {state.message} A sweep leaves "
        "nothing to undo, so its journal is removed: sweep again for those.",
        False,
    )
