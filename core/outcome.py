"""The typed result of a regeneration run: what callers (prompt-change, CI, tests) read."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from core.approval import Approval


class Decision(StrEnum):
    """How a regeneration ended."""

    UPGRADED = "upgraded"
    DRY_RUN = "dry_run"
    CANDIDATE_KEPT = "candidate_kept"
    """The gate let it through; the candidate stays PENDING for a later upgrade (the prompt
    check gates every kind before it upgrades any)."""
    NOTHING_TO_DO = "nothing_to_do"
    GATE_BLOCKED = "gate_blocked"
    NOT_APPROVED = "not_approved"
    """The gate let it through, but the operator rejected it or did not answer in time."""
    STALLED = "stalled"
    REFUSED = "refused"
    GENERATION_FAILED = "generation_failed"
    UPGRADE_NOT_APPLIED = "upgrade_not_applied"
    """The upgrade failed and the server shows it changed nothing: nothing was changed back,
    the candidate was left as a gate-blocked run's."""
    ROLLED_BACK = "rolled_back"
    ERROR = "error"


class GateOutcome(BaseModel):
    """The gate's verdict, its one-sentence summary and the full Markdown report."""

    verdict: str
    sentence: str
    markdown: str
    blocked: bool


class TouchedIds(BaseModel):
    """How many rows the run promoted, archived and deleted, and the file naming each id."""

    promoted: int = 0
    archived: int = 0
    deleted: int = 0
    kept_current: int = 0
    """Live and out-of-scope rows the upgrade archived and the run made CURRENT again."""
    discarded_stale: int = 0
    """Stale PENDING rows an earlier rerun left, deleted before the rerun (in the backup)."""
    ids_file: str | None = None
    live_file: str | None = None
    """The backup of the rows users created or changed during the run, when any."""


class RegenerationOutcome(BaseModel):
    """Everything a run decided, as the flow's result."""

    kind: str
    agent_version: str | None = None
    server: str
    decision: Decision
    message: str
    gate: GateOutcome | None = None
    approval: Approval | None = None
    """The operator's answer, when the run asked for one."""
    counts_before: dict[str, int] | None = None
    counts_after: dict[str, int] | None = None
    backup: str | None = None
    touched: TouchedIds = Field(default_factory=TouchedIds)

    @property
    def succeeded(self) -> bool:
        """Upgraded, dry run, candidate kept or nothing to do: the run did what was asked."""
        return self.decision in (
            Decision.UPGRADED,
            Decision.DRY_RUN,
            Decision.CANDIDATE_KEPT,
            Decision.NOTHING_TO_DO,
        )
