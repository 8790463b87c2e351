"""Stalls: the server's flag, and stalls inferred from generation results (H2, H7)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from reflexio_api.models import OperationStatus, StallState

StallKind = Literal["auth_error", "billing_error", "no_output"]


@dataclass(frozen=True)
class Stall:
    """Learning is stalled: the server said so (`inferred` False) or its results show it."""

    reason: StallKind
    detail: str
    inferred: bool
    notified_before: bool = False

    @property
    def message(self) -> str:
        """The sentence a run ends with: 'Learning is stalled: auth_error ...'."""
        how = "inferred from the generation results" if self.inferred else "server stall flag"
        return f"Learning is stalled: {self.reason} ({how}). {self.detail}"


_ADVICE = {
    "auth_error": "Check the LLM provider API key configured on the Reflexio server.",
    "billing_error": (
        "Check the LLM provider's billing, quota and rate limits for the Reflexio server's key."
    ),
    "no_output": (
        "The LLM provider most likely rejects the key or the bill (profile reruns hide "
        "provider errors, H2). Check the server log and the provider account."
    ),
}


def stall_from_state(state: StallState) -> Stall | None:
    """The server's stall flag as a Stall (None when not stalled)."""
    if not state.stalled:
        return None
    reason: StallKind = state.reason or "auth_error"
    since = f" since {state.stalled_at.isoformat()}" if state.stalled_at else ""
    return Stall(
        reason=reason,
        detail=f"The server reports learning paused{since}. {_ADVICE[reason]}",
        inferred=False,
        notified_before=state.notified_in_cc,
    )


def classify_provider_error(error: str | None) -> Literal["auth_error", "billing_error"] | None:
    """Map a failed user's error text to a provider stall reason.

    litellm's client errors come out as '(LiteLLMClientError/non_transient)' for 401/403
    (the key) and '(LiteLLMClientError/transient)' for 402/429/5xx (bill, quota, rate limit).
    """
    text = (error or "").lower()
    if "non_transient" in text or "invalid_api_key" in text or "authentication" in text:
        return "auth_error"
    if "transient" in text or "insufficient_quota" in text or "rate limit" in text:
        return "billing_error"
    return None


def infer_stall(status: OperationStatus, service: str) -> Stall | None:
    """A stall read from a finished generation (H7: the server's flag never turns on).

    - every failed user failed on a provider auth error -> auth_error;
    - every failed user failed on a transient provider error (bill/quota/rate) -> billing_error;
    - a profile rerun that completed over users with interactions but generated nothing
      -> no_output (H2: the provider error is swallowed).
    Mixed or unrelated failures are not a stall (the run fails as a generation failure).
    """
    failed = status.failed_user_ids
    if failed and status.failed_users >= max(status.total_users, 1):
        kinds = {classify_provider_error(f.error) for f in failed}
        if len(kinds) == 1 and None not in kinds:
            reason = kinds.pop()
            assert reason is not None
            sample = (failed[0].error or "")[:200]
            return Stall(
                reason=reason,
                detail=(
                    f"{service} failed for all {len(failed)} user(s) with LLM provider "
                    f"errors, e.g. {sample!r}. {_ADVICE[reason]}"
                ),
                inferred=True,
            )
    # total_users counts the users that had interactions matching the rerun's filters.
    if (
        service == "profile_generation"
        and status.status == "completed"
        and status.total_users > 0
        and status.stats.get("total_generated") == 0
    ):
        return Stall(
            reason="no_output",
            detail=(
                f"The profile rerun completed over {status.total_users} user(s) with "
                f"interactions but generated 0 profiles. {_ADVICE['no_output']}"
            ),
            inferred=True,
        )
    return None


def describe_failed_operation(status: OperationStatus) -> str:
    """One sentence on a generation that did not complete cleanly."""
    errors = Counter((f.error or "no error text")[:160] for f in status.failed_user_ids)
    top = "; ".join(f"{n}x {e}" for e, n in errors.most_common(3))
    base = (
        f"{status.service_name} ended {status.status}: {status.failed_users} of "
        f"{status.total_users} user(s) failed"
    )
    if status.error_message:
        base += f" ({status.error_message[:200]})"
    return base + (f": {top}" if top else "") + "."
