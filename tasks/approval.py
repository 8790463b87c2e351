"""Ask an operator in the Prefect UI: pause the flow run with a form, read the answer.

Prefect's pause-with-input: the run goes Paused, the UI shows a Resume button whose form
has the request (Markdown) as its description and the fields of `ApprovalForm`. The
server checks the answer against the form's JSON schema before it resumes the run, so a
rejection without a reason is refused in the UI, not in the flow.

Called from the flow run itself (a paused run may start no task), never inside a task.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Running
from pydantic import ConfigDict, Field

from core.approval import Approval, ApprovalDecision

POLL_S = 2
"""How often the paused run looks for the answer (Prefect's default is 10 s)."""

NON_BLANK = r"\S"

REASON_WHEN_REJECTING = {
    # JSON Schema (checked by the Prefect server on resume): approve off -> a reason.
    "if": {"properties": {"approve": {"const": False}}},
    "then": {"properties": {"reason": {"pattern": NON_BLANK}}, "required": ["reason"]},
}


class ApprovalForm(RunInput):
    """The form that resumes a run waiting for approval."""

    model_config = ConfigDict(json_schema_extra=REASON_WHEN_REJECTING)

    approve: bool = Field(
        False, description="On: upgrade to the new generation. Off: reject it (not upgraded)."
    )
    reason: str = Field("", description="Why. Required when rejecting.")
    decided_by: str = Field(
        pattern=NON_BLANK,
        description="Your name. Prefect has no user accounts here, so the run records the "
        "name you type.",
    )


def ask_operator(request_markdown: str, timeout_s: int) -> Approval:
    """Pause this flow run until an operator submits the form, or `timeout_s` passes (a
    timeout counts as a rejection)."""
    form = ApprovalForm.with_initial_data(description=request_markdown)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=POLL_S)
    except FlowPauseTimeout:
        resume_after_timeout()
        return Approval.timed_out(timeout_s)
    decision = ApprovalDecision.APPROVED if answer.approve else ApprovalDecision.REJECTED
    return Approval(decision, answer.decided_by.strip(), answer.reason.strip())


def resume_after_timeout() -> None:
    """Prefect leaves a timed-out pause in Paused, and the server then replaces the run's
    final state with Failed "The flow was failed and never resumed.", losing the run's own
    message: force the run back to Running so it ends the way a rejection does."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            context.flow_run.id,
            Running(message="Approval timed out; finishing without upgrading."),
            force=True,
        )
