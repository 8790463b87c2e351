"""Pure decisions of the regeneration pipelines: no Prefect, no HTTP.

Everything here takes plain values (client models, dicts, counts) and returns plain values,
so it is unit-tested without a server or a Prefect API.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from reflexio_api.models import OperationStatus, StallState

BACKUP_FORMAT = "reflexio-pipelines-backup/1"

# --- identity of a server ------------------------------------------------------------------


def server_key(url: str) -> str:
    """`host:port` of a Reflexio URL (the default port filled in), e.g. '127.0.0.1:8081'."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def server_slug(url: str) -> str:
    """The server key made safe for artifact keys and limit names: lowercase, digits, dashes."""
    raw = server_key(url).lower()
    return "".join(c if c.isalnum() else "-" for c in raw).strip("-")


def regeneration_lock_name(url: str) -> str:
    """Global concurrency limit name: one regeneration per Reflexio server."""
    return f"reflexio-regeneration-{server_slug(url)}"


def resource_id(url: str) -> str:
    """Event resource id of a server: 'reflexio.server.<host:port>'."""
    return f"reflexio.server.{server_key(url)}"


# --- stalls --------------------------------------------------------------------------------

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


# --- guards --------------------------------------------------------------------------------


def stale_pending_message(count: int, what: str, discard_flag: str) -> str:
    """Refusal for rows left PENDING by an earlier rerun (H5: they would be promoted too)."""
    return (
        f"Refusing to regenerate: {count} {what} are already PENDING from an earlier rerun. "
        "An upgrade would promote them together with the new generation (H5). Inspect them, "
        f"then rerun with {discard_flag}=True to delete them first."
    )


# --- expected counts and verification -----------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Rows per status (profiles, or one agent_version's user playbooks)."""

    current: int
    pending: int
    archived: int

    def as_dict(self) -> dict[str, int]:
        return {"current": self.current, "pending": self.pending, "archived": self.archived}


def users_of(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Distinct user ids of rows (None user ids count as one anonymous user)."""
    return {str(r.get("user_id")) for r in rows}


def expected_after_upgrade(
    current_rows: Sequence[Mapping[str, Any]],
    pending_rows: Sequence[Mapping[str, Any]],
    only_affected_users: bool,
) -> Counts:
    """What an upgrade should leave: PENDING promoted, CURRENT of the affected users archived.

    Old ARCHIVED rows are deleted organisation-wide either way (H1). With
    `only_affected_users`, CURRENT rows of users without PENDING rows stay CURRENT.
    """
    affected = users_of(pending_rows)
    if only_affected_users:
        kept = [r for r in current_rows if str(r.get("user_id")) not in affected]
        archived = len(current_rows) - len(kept)
        return Counts(current=len(pending_rows) + len(kept), pending=0, archived=archived)
    return Counts(current=len(pending_rows), pending=0, archived=len(current_rows))


@dataclass
class Verification:
    """Measured counts against expectations; `problems` is empty when all matched."""

    expected: Counts
    measured: Counts
    promoted_reported: int | None
    pending_before: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class VerificationFailed(RuntimeError):
    """Counts after an upgrade are not what the upgrade should have produced."""


def verify_upgrade(
    expected: Counts, measured: Counts, pending_before: int, promoted_reported: int | None
) -> Verification:
    """Compare what the upgrade should have left with what the server now holds."""
    result = Verification(expected, measured, promoted_reported, pending_before)
    if promoted_reported is not None and promoted_reported != pending_before:
        result.problems.append(
            f"the server reports {promoted_reported} row(s) promoted, {pending_before} were pending"
        )
    for name in ("current", "pending", "archived"):
        want, got = getattr(expected, name), getattr(measured, name)
        if want != got:
            result.problems.append(f"{name}: expected {want}, found {got}")
    return result


def check_verification(result: Verification) -> None:
    """Raise VerificationFailed naming every mismatch."""
    if not result.ok:
        raise VerificationFailed(
            "Post-upgrade verification failed: " + "; ".join(result.problems) + "."
        )


# --- H6: users left without a CURRENT playbook --------------------------------------------


def users_without_current(
    live_rows: Sequence[Mapping[str, Any]], users_before: Iterable[str]
) -> list[str]:
    """Users that had a CURRENT playbook before the rerun and have none now (H6 tombstones)."""
    have = {str(r.get("user_id")) for r in live_rows if r.get("status") in (None, "current")}
    return sorted(u for u in set(users_before) if u not in have)


def playbooks_to_recreate(
    before: Sequence[Mapping[str, Any]], live_now: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """CURRENT playbooks listed before a rerun whose content no CURRENT row of that user has
    now: what H6 tombstoned and must be re-created to leave the server as it was."""
    current_now = {
        (r.get("user_id"), r.get("content"))
        for r in live_now
        if r.get("status") in (None, "current")
    }
    return [
        r
        for r in before
        if r.get("status") in (None, "current")
        and (r.get("user_id"), r.get("content")) not in current_now
    ]


# --- backups -------------------------------------------------------------------------------


def backup_document(
    kind: Literal["profiles", "user_playbooks"],
    server_url: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    flow_run_id: str | None = None,
    agent_version: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The JSON document of a backup: what, from where, when, and every row as listed."""
    statuses = Counter(str(r.get("status") or "current") for r in rows)
    return {
        "format": BACKUP_FORMAT,
        "kind": kind,
        "server": server_key(server_url),
        "agent_version": agent_version,
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "flow_run_id": flow_run_id,
        "counts": dict(sorted(statuses.items())),
        "rows": [dict(r) for r in rows],
    }


def backup_path(
    backup_dir: Path, kind: str, server_url: str, run_id: str, now: datetime | None = None
) -> Path:
    """One file per run: <dir>/<kind>-<host-port>-<UTC time>-<run id prefix>.json."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return backup_dir / f"{kind}-{server_slug(server_url)}-{stamp}-{run_id[:8]}.json"


def write_backup(path: Path, document: Mapping[str, Any]) -> Path:
    """Write atomically (temp file then rename), so a crash never leaves half a backup."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path


def read_backup(path: Path) -> dict[str, Any]:
    """Load and check a backup file; raises ValueError saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read backup {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != BACKUP_FORMAT:
        raise ValueError(f"{path} is not a {BACKUP_FORMAT} backup file")
    if not isinstance(data.get("rows"), list):
        raise ValueError(f"backup {path} has no 'rows' list")
    return data


def comparable(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows reduced to `keys`, sorted: to compare a backup with what the server holds."""
    return sorted(
        (tuple(str(r.get(k)) for k in keys) for r in rows),
    )


PROFILE_KEYS = ("profile_id", "user_id", "content", "status", "source")
PLAYBOOK_KEYS = ("user_playbook_id", "user_id", "content", "status", "agent_version")
