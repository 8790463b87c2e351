"""An operator's approval of an upgrade: the answer, and the text the approval form shows.

The engine asks when the gate warned and the run says `on_warn="ask"`, or always with
`require_approval`; how the question reaches a person (a paused Prefect run with a form)
is an effect outside core.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.kinds import Kind


class ApprovalDecision(StrEnum):
    """How an approval request ended."""

    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class Approval:
    """The answer to an approval request: the decision, who gave it and why.

    `by` is the name the operator typed: open-source Prefect has no user accounts, so the
    form cannot tell who submitted it."""

    decision: ApprovalDecision
    by: str
    reason: str

    @classmethod
    def timed_out(cls, timeout_s: int) -> Approval:
        """Nobody answered within `timeout_s`: counts as a rejection."""
        return cls(ApprovalDecision.TIMED_OUT, "nobody", f"no answer within {duration(timeout_s)}")

    @property
    def approved(self) -> bool:
        return self.decision is ApprovalDecision.APPROVED

    def sentence(self) -> str:
        """'Approved by alice: ...', 'Rejected by bob: ...' or 'Approval timed out: ...'."""
        if self.decision is ApprovalDecision.TIMED_OUT:
            return f"Approval timed out: {self.reason}."
        verb = "Approved" if self.approved else "Rejected"
        return f"{verb} by {self.by}: {self.reason or 'no reason given'}."


def duration(seconds: int) -> str:
    """A timeout in words: '45 s', '5 min', '8 h'."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def approval_request(kind: Kind, server: str, why: str, gate_markdown: str, timeout_s: int) -> str:
    """The Markdown the approval form shows: what is asked, what each answer does, then
    the gate report."""
    if kind.candidate_deleted_when_not_upgraded:
        refused = "the candidate's PENDING rows are deleted"
    else:
        refused = (
            "the candidate's PENDING rows are kept and the CURRENT rows the rerun "
            "tombstoned are put back (H6)"
        )
    return "\n".join(
        [
            f"## Upgrade {kind.label} on `{server}`?",
            "",
            f"**Why you are asked:** {why}",
            "",
            "- **Approve**: switch *Approve* on, type your name (a reason is optional), "
            "Submit. The run upgrades (PENDING becomes CURRENT), verifies by id and rolls "
            "back if anything fails.",
            "- **Reject**: leave *Approve* off, type your name and a reason, Submit. Nothing "
            f"is upgraded: CURRENT stays as it is and {refused}.",
            f"- **No answer within {duration(timeout_s)}**: the same as a rejection "
            '("approval timed out").',
            "",
            "Your name and reason go into the run summary and a Prefect event. Prefect has "
            "no user accounts here: the name is what you type.",
            "",
            "---",
            "",
            gate_markdown,
        ]
    )
