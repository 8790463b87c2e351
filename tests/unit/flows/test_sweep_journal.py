"""The sweep's run journal, against a fake server: written before the first manual
generation, each step recorded as it starts and ends, removed once every step was tried and
kept when the run dies; the repair (flows/sweep_repair.py) waits for the generation the
dead sweep left running and runs only the steps not done."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from core.journal import RunJournal
from flows.params import SweepParams
from flows.sweep import run_sweep
from flows.sweep_repair import finish_sweep
from reflexio_api.models import OperationStatus, ServiceName
from tasks.sweep import Prerequisites, Snapshot, StepResult, SweepPlan, step_key

URL = "http://reflexio.test:8081"
SENT_AT = 1_800_000_000
STEPS = ["chat/profiles/", "chat/playbooks/v1", "email/profiles/", "email/playbooks/v1"]


class Killed(BaseException):
    """The sweep's process died (a SIGKILL, a cancel, a flow timeout)."""


@dataclass
class FakeSweep:
    """SweepOps in memory: the calls in order, the stored journal, the server's slots."""

    calls: list[str] = field(default_factory=list)
    entry: RunJournal | None = None
    kill_at: str | None = None
    """The step whose generation is sent, then the process dies."""
    fail: set[str] = field(default_factory=set)
    """Steps the server fails (the step ends 'failed')."""
    stall: str | None = None
    slots: dict[str, OperationStatus] = field(default_factory=dict)
    """What get_operation_status shows per service."""
    after_wait: dict[str, OperationStatus] = field(default_factory=dict)
    """What the slot shows once waited on (absent: the same as before)."""

    def stalled(self) -> str | None:
        return self.stall

    def prerequisites(self, plan: SweepPlan) -> Prerequisites:
        return Prerequisites()

    def snapshot(self, kinds: list[str], agent_versions: list[str]) -> Snapshot:
        return Snapshot({}, {})

    def generate(self, step: StepResult, spacing_s: float) -> StepResult:
        key = step_key(step)
        self.calls.append(f"generate:{key}")
        if key == self.kill_at:
            raise Killed(key)
        if key in self.fail:
            step.status, step.message = "failed", "the server said no"
        return step

    def operation(self, service: ServiceName) -> OperationStatus | None:
        return self.slots.get(service)

    def wait_until_idle(self, service: ServiceName) -> OperationStatus | None:
        self.calls.append(f"wait:{service}")
        return self.after_wait.get(service, self.slots.get(service))

    def publish(self, steps: list[StepResult], notes: list[str]) -> None:
        self.calls.append("publish")

    def save(self, journal: RunJournal) -> None:
        self.calls.append(f"journal:{','.join(journal.swept)}|{journal.sweeping}")
        self.entry = journal

    def clear(self) -> None:
        self.calls.append("journal:clear")
        self.entry = None

    @property
    def generated(self) -> list[str]:
        return [c.removeprefix("generate:") for c in self.calls if c.startswith("generate:")]


def params() -> SweepParams:
    return SweepParams(reflexio_url=URL, sources=["chat", "email"], manual_calls_per_minute=600)


def journal() -> RunJournal:
    return RunJournal(server="s", flow_run_id="dead-run", kind="sweep", written_at=1, parameters={})


def slot(status: str, *, mode: str = "manual_regular", source: str = "email") -> OperationStatus:
    return OperationStatus(
        service_name="profile_generation",
        status=status,  # type: ignore[arg-type]
        started_at=SENT_AT + 1,
        request_params={"mode": mode, "source": source},
    )


def killed_at(step: str) -> RunJournal:
    """The journal a sweep leaves when it dies once `step`'s generation was sent."""
    return killed_at_with(step, {})


def killed_at_with(step: str, slots: dict[str, OperationStatus]) -> RunJournal:
    """As `killed_at`, with the server's slots showing `slots` throughout."""
    server = FakeSweep(kill_at=step, slots=slots)
    with pytest.raises(Killed):
        run_sweep(server, params(), journal())
    assert server.entry is not None, "a sweep killed after its first write leaves its journal"
    return server.entry


def dead_journal(step: str) -> RunJournal:
    """As `killed_at`, stored with the parameters of the dead run and its send time known."""
    return replace(killed_at(step), parameters=params().run_again(), sweeping_since=SENT_AT)


def test_the_journal_is_written_before_the_first_generation_and_records_each_step():
    server = FakeSweep()
    state = run_sweep(server, params(), journal())

    assert state.is_completed(), state.message
    first_save = server.calls.index("journal:|")
    assert first_save < server.calls.index(f"generate:{STEPS[0]}")
    # each step is recorded as sent before its call and as done after it
    for i, step in enumerate(STEPS):
        done = ",".join(STEPS[:i])
        sent = server.calls.index(f"journal:{done}|{step}")
        assert sent < server.calls.index(f"generate:{step}")
        ended = ",".join(STEPS[: i + 1])
        assert server.calls.index(f"generate:{step}") < server.calls.index(f"journal:{ended}|")
    assert server.calls[-1] == "journal:clear" and server.entry is None


def test_a_sweep_refused_before_any_generation_writes_no_journal():
    server = FakeSweep(stall="Learning is stalled: quota.")
    state = run_sweep(server, params(), journal())

    assert state.is_failed()
    assert not any(c.startswith("journal") for c in server.calls), server.calls


def test_a_step_the_server_failed_is_reported_and_the_journal_removed_at_the_end():
    server = FakeSweep(fail={STEPS[1]})
    state = run_sweep(server, params(), journal())

    assert state.is_failed() and "chat" in state.message
    assert server.generated == STEPS  # the other steps ran
    assert server.entry is None  # every step was tried: nothing for the next writer


def test_a_killed_sweep_keeps_its_journal_with_the_steps_done_and_the_one_sent():
    entry = killed_at(STEPS[2])

    assert entry.kind == "sweep"
    assert entry.swept == (STEPS[0], STEPS[1])
    assert entry.sweeping == STEPS[2] and entry.sweeping_since == 0  # an empty slot before it


def test_the_repair_runs_only_the_steps_not_done():
    entry = dead_journal(STEPS[2])  # the server shows no generation of the step sent
    server = FakeSweep()

    done, unfinished = finish_sweep(URL, entry, server)

    assert not unfinished, done
    assert server.generated == [STEPS[2], STEPS[3]]
    assert f"step {STEPS[2]}: the server shows no completed generation of it, run again" in done
    assert server.entry is None  # finished: the journal is removed


def test_an_earlier_generation_of_the_same_step_is_not_taken_for_the_dead_ones():
    """An earlier sweep's generation of the same step is the slot's last operation when the
    dead sweep journaled the step (killed before it was sent): the repair runs it again."""
    earlier = slot("completed").model_copy(update={"started_at": SENT_AT})
    entry = killed_at_with(STEPS[2], {"profile_generation": earlier})
    assert entry.sweeping == STEPS[2] and entry.sweeping_since == SENT_AT
    entry = replace(entry, parameters=params().run_again())
    server = FakeSweep(slots={"profile_generation": earlier})

    done, unfinished = finish_sweep(URL, entry, server)

    assert not unfinished, done
    assert server.generated == [STEPS[2], STEPS[3]]
    assert "the server shows no completed generation of it, run again" in done


def test_the_repair_waits_for_the_generation_the_dead_sweep_left_running():
    entry = dead_journal(STEPS[2])
    server = FakeSweep(
        slots={"profile_generation": slot("in_progress")},
        after_wait={"profile_generation": slot("completed")},
    )

    done, unfinished = finish_sweep(URL, entry, server)

    assert not unfinished, done
    assert server.calls.index("wait:profile_generation") < server.calls.index(
        f"generate:{STEPS[3]}"
    )
    assert server.generated == [STEPS[3]]  # the step the server completed is not run again
    assert "it had completed on the server, not run again" in done


def test_a_generation_still_running_after_the_wait_leaves_the_journal():
    entry = dead_journal(STEPS[2])
    server = FakeSweep(slots={"profile_generation": slot("in_progress")})

    done, unfinished = finish_sweep(URL, entry, server)

    assert unfinished and "still running" in done
    assert server.generated == [] and "journal:clear" not in server.calls


@pytest.mark.parametrize(
    "running",
    [slot("in_progress", mode="rerun"), slot("in_progress", source="chat")],
    ids=["a rerun", "another source's generation"],
)
def test_an_operation_the_sweep_did_not_start_is_not_waited_on_nor_run_over(running):
    entry = dead_journal(STEPS[2])
    server = FakeSweep(slots={"profile_generation": running})

    done, unfinished = finish_sweep(URL, entry, server)

    assert unfinished and "did not start is in progress" in done
    assert server.generated == [] and "wait:profile_generation" not in server.calls


def test_a_repair_that_dies_leaves_what_both_runs_did_for_the_next_one():
    entry = dead_journal(STEPS[1])
    server = FakeSweep(kill_at=STEPS[3])

    with pytest.raises(Killed):
        finish_sweep(URL, entry, server)

    assert server.entry is not None
    assert server.entry.swept == (STEPS[0], STEPS[1], STEPS[2])  # the repair ran 1 and 2
    assert server.entry.sweeping == STEPS[3]
    assert server.entry.flow_run_id == "dead-run"


def test_the_sweep_journal_is_stored_and_read_back_and_an_older_journal_still_reads():
    entry = dead_journal(STEPS[2])
    assert RunJournal.from_json(entry.to_json(), "block") == entry
    assert "api_key" not in entry.to_json() and URL not in entry.to_json()

    older: dict[str, Any] = json.loads(journal().to_json())
    for name in ("swept", "sweeping", "sweeping_since"):
        older.pop(name)
    assert RunJournal.from_json(json.dumps(older), "block").swept == ()


def test_what_to_do_by_hand_names_the_steps_already_done():
    entry = dead_journal(STEPS[2])

    assert entry.describe() == "manual-generation-sweep (flow run dead-run, 2 step(s) done)"
    assert f"steps already done: {STEPS[0]}, {STEPS[1]}" in entry.by_hand()
    assert "no generation in progress" in entry.by_hand()
