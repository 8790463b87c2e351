"""Every shared name in one place: work pool, blocks, tags, the per-server lock, events and
artifact keys. The flows, `deployments.setup` and (checked by a test) `prefect.yaml` use
these; change a name here and nowhere else."""

from __future__ import annotations

from core.identity import server_slug

WORK_POOL = "reflexio-pool"
SECRET_BLOCK = "reflexio-api-key"
NOTIFICATION_BLOCK = "reflexio-alerts"
GOLDEN_KEY_BLOCK = "reflexio-golden-llm-key"  # the golden set's scratch server's LLM key
FLOW_TAG = "reflexio"

PROMPT_CHECK_DEPLOYMENT = "prompt-change/prompt-check"
"""flow/deployment that `reflexio-pipelines trigger-prompt-check` runs (prefect.yaml)."""
PROFILE_NIGHTLY = "profile-regeneration/nightly"
PLAYBOOK_NIGHTLY = "playbook-regeneration/nightly-per-agent-version"
STALL_WATCH_DEPLOYMENT = "stall-watch/every-5-minutes"
NIGHTLY_DEPLOYMENTS = (PROFILE_NIGHTLY, PLAYBOOK_NIGHTLY)
"""The nightly regenerations (prefect.yaml, `flow/deployment`) watched for silence: no
completed run in 26 h. The profile nightly is scheduled; the playbook nightly runs when a
run of the profile nightly ends Completed (deployments/setup.py)."""
PACED_ROUTES = {
    "manual_profile_generation": 5,
    "manual_playbook_generation": 5,
    "clear_user_data": 10,
}
"""Server routes paced through a shared Prefect rate limit, with the server's limit per minute
(H11)."""

EVENT_STALL_DETECTED = "reflexio.stall.detected"
EVENT_GATE_PASSED = "reflexio.gate.passed"
EVENT_GATE_FAILED = "reflexio.gate.failed"
EVENT_APPROVAL_DECIDED = "reflexio.approval.decided"
EVENT_UPGRADED = "reflexio.upgraded"
EVENT_ROLLED_BACK = "reflexio.rolled-back"
EVENT_RESTORED = "reflexio.restored"
EVENT_CHECK_UNDONE = "reflexio.prompt-check.undone"
EVENT_RUN_REPAIRED = "reflexio.run.repaired"

HOUR_S = 3600
FLOW_TIMEOUT_S = {
    "profile-regeneration": 23 * HOUR_S,
    "playbook-regeneration": 23 * HOUR_S,
    "prompt-change": 6 * HOUR_S,
    "restore-profiles": 6 * HOUR_S,
    "clear-user-data": 2 * HOUR_S,
    "manual-generation-sweep": 2 * HOUR_S,
    "stall-watch": 270,
}
"""Each flow's timeout (a run past it ends TimedOut, which the failed-run automation
reports). A regeneration's waits (lock, rerun, approval) must fit in its timeout with
WORK_MARGIN_S to spare: its parameters are refused otherwise (flows/params.py). The stall
watch must end before its next 5-minute run, and its slowest run (every call failing slowly
through its retries: flows/stall_watch.run_budget_s) must end before its timeout."""
WORK_MARGIN_S = 2 * HOUR_S
"""What a regeneration keeps of its timeout for listing, backup, gate, upgrade and checks."""

SWEEP_ARTIFACT = "manual-sweep-summary"
CLEAR_USERS_ARTIFACT = "clear-users-summary"


def lock_name(url: str) -> str:
    """Global concurrency limit of one server (by its identity, however the URL is spelled):
    one writer at a time, whichever flow writes (flows/lock.py)."""
    return f"reflexio-lock-{server_slug(url)}"


def rate_limit_name(url: str, route: str) -> str:
    """Global concurrency limit pacing one rate-limited route of one server (1 slot that
    decays in the route's spacing: tasks/pacing.py), shared by every process."""
    return f"reflexio-rate-{server_slug(url)}-{route.replace('_', '-')}"


def restore_artifact(url: str) -> str:
    """Summary artifact key of the restore flow on one server."""
    return f"restore-{server_slug(url)}-summary"


PROMPT_CHECK_ARTIFACT_PREFIX = "prompt-check-"


def prompt_check_artifact(url: str) -> str:
    """Report artifact key of the prompt check on one server."""
    return f"{PROMPT_CHECK_ARTIFACT_PREFIX}{server_slug(url)}"


def run_journal_block(url: str) -> str:
    """Secret block holding the journal of an unfinished regeneration on one server (what
    the next writer finishes or undoes: flows/run_repair.py)."""
    return f"reflexio-run-journal-{server_slug(url)}"


def check_record_block(url: str) -> str:
    """Secret block holding the record of an unfinished prompt check on one server (its
    original config and what to clean up: flows/check_repair.py)."""
    return f"reflexio-prompt-check-{server_slug(url)}"
