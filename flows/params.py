"""Typed flow parameters: each model is one flow's form, one field per parameter
(flows/flat_params.py makes its fields the flow's parameters)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from core.prune import PRUNE_ABOVE
from deployments.catalogue import (
    FLOW_TIMEOUT_S,
    GOLDEN_KEY_BLOCK,
    NOTIFICATION_BLOCK,
    WORK_MARGIN_S,
)
from gate import GatePolicy, GatePolicyOverrides
from reflexio_api import ReflexioSettings
from tasks.backups import check_file_location, check_location, default_backup_location
from tasks.clear_users import Listed
from tasks.pacing import spacing_for
from tasks.settings import reflexio_settings
from tasks.sweep import SERVER_MANUAL_LIMIT_PER_MIN, SweepKind, SweepPlan

OnWarn = Literal["upgrade", "ask", "refuse"]

BackupLocation = Annotated[str, BeforeValidator(check_location)]
"""A local directory, an fsspec URL (s3://bucket/prefix) or block:<name> (tasks/backups.py)."""
BackupFile = Annotated[str, BeforeValidator(check_file_location)]
"""A file in a backup location: a path, a URL or block:<name>/<file>."""


def refuse_renamed(data: Any, old: str, replacement: str) -> Any:
    """Refuse a parameter that was renamed, naming what replaced it."""
    if isinstance(data, dict) and old in data:
        raise ValueError(f"{old} was replaced by {replacement}")
    return data


class ServerParams(BaseModel):
    """Which Reflexio server a flow works on; every flow's parameters start here."""

    model_config = ConfigDict(extra="forbid")

    reflexio_url: str | None = Field(
        None,
        description="Reflexio server URL; empty: REFLEXIO_URL from the environment. The API "
        "key comes from REFLEXIO_API_KEY or the 'reflexio-api-key' Secret block (never a "
        "parameter).",
    )

    def settings(self) -> ReflexioSettings:
        """Client settings: environment, this URL override, the API key's Secret block."""
        return reflexio_settings(self.reflexio_url)


class WriterParams(ServerParams):
    """A flow that writes to the server: it holds the server's lock while it writes."""

    lock_timeout_s: float = Field(
        60,
        gt=0,
        description="How long to wait while another run writes to this server (a "
        "regeneration, restore, clear-user-data, sweep or prompt check), then end Failed "
        "without writing.",
    )


class GoldenParams(BaseModel):
    """The golden set, run first on a scratch server (flows/golden_stage.py): the prompt
    check's candidate config, or a regeneration's current learning config, must find the
    expected facts and rules before the run writes anything to the server."""

    golden_file: Path | None = Field(
        None,
        description="A golden set (YAML, see golden/sample.yaml): before anything is written "
        "to the server, a scratch Reflexio server learns the golden conversations with the "
        "config under test (the prompt check's candidate; a regeneration's current learning "
        "config), and the run fails below the gate policy's golden_min_recall. Empty: no "
        "golden set.",
    )
    golden_server_url: str | None = Field(
        None,
        description="A scratch Reflexio server to run the golden set on instead of starting "
        "one (its golden users' data is erased first). Never the server the run works on.",
    )
    golden_llm_key_block: str = Field(
        GOLDEN_KEY_BLOCK,
        description="Secret block holding the LLM provider key (OPENAI_API_KEY) of the "
        "scratch server the run starts.",
    )
    golden_llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint for the scratch server's chat and embedding "
        "calls (the stand-in in tests); empty: the provider's own API.",
    )


class RegenerationParams(WriterParams, GoldenParams):
    """Profile regeneration: rerun -> gate -> backup -> upgrade -> verify (rollback)."""

    sources: list[str] = Field(
        [],
        description="Rerun only these interaction sources (one rerun per source, in order); "
        "empty: all interactions.",
    )
    replace_unsourced_rows: bool = Field(
        False,
        description="With sources: let the upgrade replace the CURRENT rows that carry no "
        "source (a rerun without sources wrote them, H15) of the users this run regenerates; "
        "the gate compares the candidate with them. Off: such rows refuse the run.",
    )
    start_time: datetime | None = Field(
        None,
        description="Rerun interactions from this time. The window limits the interactions, "
        "not the rows: the upgrade replaces every CURRENT row of the users it promotes.",
    )
    end_time: datetime | None = Field(None, description="Rerun interactions up to this time.")
    dry_run: bool = Field(
        False,
        description="Rerun and gate only, then delete the PENDING rows this run created; "
        "no backup, no upgrade. CURRENT is never touched.",
    )
    gate_policy: GatePolicyOverrides = Field(  # type: ignore[valid-type]
        GatePolicyOverrides(),
        description="Gate thresholds that differ from the defaults (docs/gate.md); empty "
        "ones keep theirs.",
    )
    discard_stale_pending: bool = Field(
        False,
        description="Delete rows left PENDING by an earlier rerun (by id) instead of refusing.",
    )
    only_affected_users: bool = Field(
        True,
        description="Upgrade only users with new PENDING rows (others keep their CURRENT "
        "rows). Old ARCHIVED rows are deleted organisation-wide either way (H1).",
    )
    on_warn: OnWarn = Field(
        "upgrade",
        description="What a 'warn' gate verdict does: upgrade; ask (the run pauses until an "
        "operator approves or rejects it in the UI, see approval_timeout_s); refuse (not "
        "upgraded).",
    )
    require_approval: bool = Field(
        False,
        description="Ask an operator before every upgrade, even when the gate passed (never "
        "on a dry run or a failed gate).",
    )
    approval_timeout_s: int = Field(
        3600,
        ge=1,
        description="How long a run waits for the operator's answer; no answer counts as a "
        "rejection. The run holds this server's regeneration lock while it waits.",
    )
    max_rows_to_keep: int = Field(
        50_000,
        ge=0,
        description="Most rows the upgrade may archive that the run must then make CURRENT "
        "again, one by one (rows users created during the run, and rows of sources the run "
        "does not regenerate). Above it the run does not upgrade.",
    )
    prune_archived_above: int = Field(
        PRUNE_ABOVE,
        ge=0,
        description="Most old ARCHIVED rows the upgrade may delete itself; above it the run "
        "deletes them first, in batches, once the upgrade is decided (they are in its backup).",
    )
    notify_on_pass: bool = Field(False, description="Also notify when the run upgraded.")
    notification_block: str = Field(
        NOTIFICATION_BLOCK, description="Name of the Prefect notification block for alerts."
    )
    backup_dir: BackupLocation = Field(
        default_factory=default_backup_location,
        description="Where backups are written, before the first write to the server: a "
        "directory, an fsspec URL (s3://bucket/prefix; credentials from the worker's "
        "environment) or block:<name> (a RemoteFileSystem block). Empty: "
        "REFLEXIO_BACKUP_DIR, else ./backups.",
    )
    backup_retention_days: int = Field(
        30,
        ge=0,
        description="After a successful run, delete this server's backups in backup_dir "
        "older than this many days, never the newest of each kind; 0 keeps every backup.",
    )
    gate_dask_address: str | None = Field(
        default_factory=lambda: os.environ.get("REFLEXIO_GATE_DASK_ADDRESS") or None,
        description="Dask scheduler address (tcp://host:8786) to run the gate's per-user "
        "shards on; empty: REFLEXIO_GATE_DASK_ADDRESS, else worker processes on this "
        "machine. Needs the 'dask' extra.",
    )
    operation_timeout_s: float = Field(
        1800, gt=0, description="How long to wait for the rerun operation."
    )

    @model_validator(mode="before")
    @classmethod
    def _allow_warn_replaced(cls, data: Any) -> Any:
        return refuse_renamed(
            data,
            "allow_warn",
            "on_warn: 'upgrade' (was allow_warn=true), 'refuse' (was allow_warn=false) or "
            "'ask' (pause for an operator's approval)",
        )

    @field_validator("sources")
    @classmethod
    def _clean_sources(cls, value: list[str]) -> list[str]:
        cleaned = [s.strip() for s in value]
        if any(not s for s in cleaned):
            raise ValueError("sources must not contain empty names")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError(
                "sources must not repeat a name: each source is rerun once, and a second "
                "rerun of it would leave two generations PENDING (H5)"
            )
        return cleaned

    @model_validator(mode="after")
    def _window(self) -> RegenerationParams:
        if self.start_time and self.end_time and self.start_time >= self.end_time:
            raise ValueError("start_time must be before end_time")
        return self

    @model_validator(mode="after")
    def _waits_fit_the_timeout(self) -> RegenerationParams:
        waits = self.lock_timeout_s + self.operation_timeout_s + self.approval_timeout_s
        budget = FLOW_TIMEOUT_S["profile-regeneration"] - WORK_MARGIN_S
        if waits > budget:
            raise ValueError(
                f"lock_timeout_s + operation_timeout_s + approval_timeout_s = {waits:g} s is "
                f"more than the {budget} s a regeneration may spend waiting (its timeout, "
                f"{FLOW_TIMEOUT_S['profile-regeneration']} s, less {WORK_MARGIN_S} s for the "
                "work itself): shorten one of them"
            )
        return self

    def policy(self) -> GatePolicy:
        """The gate policy: defaults with this run's overrides."""
        return GatePolicy().with_overrides(self.gate_policy)


class PlaybookRegenerationParams(RegenerationParams):
    """Playbook regeneration for one agent_version, then aggregation."""

    agent_version: str = Field("v1", description="Agent version whose playbooks regenerate.")
    aggregate: bool = Field(True, description="Run playbook aggregation after the upgrade.")
    only_affected_users: SkipJsonSchema[bool] = Field(
        False,
        description="Not for playbooks: the server's user-playbook upgrade archives every "
        "CURRENT row of the agent_version.",
    )

    @field_validator("only_affected_users")
    @classmethod
    def _every_user(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "only_affected_users is not available for playbooks: the server's "
                "user-playbook upgrade archives every CURRENT row of the agent_version "
                "(leave it out)"
            )
        return value

    @field_validator("agent_version")
    @classmethod
    def _valid_version(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("agent_version must be non-empty and contain no whitespace")
        return value


class RestoreParams(WriterParams):
    """Put a profile backup back, keeping what was learned since (docs/pipelines.md)."""

    def run_again(self) -> dict[str, Any]:
        """What the run journal keeps to run this again (no server, no secret)."""
        return self.model_dump(
            mode="json",
            include={
                "backup_file",
                "delete_newer",
                "records_dir",
                "allow_other_server",
                "recreate_missing",
                "assume_no_erasures",
            },
        )

    model_config = ConfigDict(extra="forbid")

    backup_file: BackupFile = Field(
        description="The backup's .manifest.json (or its .jsonl.gz data file, or an old v1 "
        ".json) as the regeneration run's summary artifact names it: a path, a URL "
        "(s3://bucket/prefix/<file>) or block:<name>/<file>."
    )
    delete_newer: bool = Field(
        False,
        description="Also delete the CURRENT/ARCHIVED profiles learned after the backup (in "
        "neither the backup nor the backed-up run's promotions). Run with dry_run first: it "
        "says how many.",
    )
    dry_run: bool = Field(
        False,
        description="Only report how many rows each action would re-create, re-status or "
        "delete; write nothing.",
    )
    records_dir: BackupLocation = Field(
        default_factory=default_backup_location,
        description="Where clear-user-data records whom it erased (erasures-<server>.jsonl): "
        "a directory, URL or block:<name>; empty: REFLEXIO_BACKUP_DIR, else ./backups. "
        "Users erased after the backup are not restored.",
    )
    allow_other_server: bool = Field(
        False,
        description="Restore a backup taken from another server (host:port) into this one, "
        "e.g. after the server moved.",
    )
    recreate_missing: bool = Field(
        False,
        description="Accept the risk of a backup without its run's touched-ids file (an old "
        "or hand-made backup): re-create every backed-up row the server no longer has, "
        "including rows users deleted, TTL expired or dedup superseded since. Without it such "
        "a restore is refused; with the file, only the rows the run's upgrade deleted are "
        "re-created.",
    )
    assume_no_erasures: bool = Field(
        False,
        description="Accept the risk of restoring without an erasure record for the server "
        "in records_dir: nobody is taken as erased by clear-user-data. Without it such a "
        "restore is refused (it could bring erased users back).",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        return refuse_renamed(
            values,
            "remove_newer",
            "delete_newer (default false: rows learned since the backup are kept; the rows "
            "the backed-up run promoted are undone either way)",
        )


class StallWatchParams(ServerParams):
    """Where to look and whom to tell."""

    notification_block: str = Field(
        NOTIFICATION_BLOCK,
        description="Name of the Prefect notification block (Slack, Teams, custom webhook...).",
    )


class PromptChangeParams(WriterParams, GoldenParams):
    """A candidate config to try; the Prefect UI renders this as the run form."""

    candidate_config: SecretStr = Field(
        description="The candidate Reflexio config: its text, a YAML or JSON mapping merged over "
        "the server's config at the top level (e.g. --param candidate_config=\"$(cat "
        'candidate.yaml)"). Kept secret: it may hold credentials.',
    )
    agent_version: str | None = Field(
        None, description="Also regenerate this agent_version's playbooks; empty: profiles only."
    )
    regenerate_profiles: bool = Field(True, description="Regenerate profiles.")
    promote: bool = Field(
        False, description="Upgrade when every gate passes; else dry run and restore the config."
    )
    gate_policy: GatePolicyOverrides = Field(  # type: ignore[valid-type]
        GatePolicyOverrides(),
        description="Gate thresholds that differ from the defaults (docs/gate.md); empty "
        "ones keep theirs.",
    )
    allow_warn: bool = Field(
        False,
        description="Pass on a 'warn' gate verdict (with promote: upgrade). The check never "
        "waits for a person: without this a warn fails it.",
    )
    notification_block: str = Field(NOTIFICATION_BLOCK, description="Notification block.")
    backup_dir: BackupLocation = Field(
        default_factory=default_backup_location,
        description="Where the regenerations' backups go: a directory, an fsspec URL "
        "(s3://bucket/prefix) or block:<name>; empty: REFLEXIO_BACKUP_DIR, else ./backups. "
        "The next run on the server restores from there if this check dies mid-promotion.",
    )
    operation_timeout_s: float = Field(1800, gt=0, description="Wait for each rerun.")

    @field_validator("agent_version")
    @classmethod
    def _valid_version(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("agent_version must be non-empty and contain no whitespace")
        return value

    @model_validator(mode="after")
    def _regenerates_something(self) -> PromptChangeParams:
        if not self.regenerate_profiles and not self.agent_version:
            raise ValueError(
                "nothing to regenerate: without profiles (--no-profiles, "
                "regenerate_profiles=false) give an agent_version whose playbooks to "
                "regenerate (--agent-version); a check that regenerates nothing proves nothing"
            )
        return self


def _clean_names(values: list[str], what: str) -> list[str]:
    cleaned = [v.strip() for v in values]
    if any(not v for v in cleaned):
        raise ValueError(f"{what} must not contain blank names")
    return list(dict.fromkeys(cleaned))


class SweepParams(WriterParams):
    """Manual generation per interaction source (the Prefect UI renders this as a form)."""

    def run_again(self) -> dict[str, Any]:
        """What the run journal keeps to finish this sweep (no server, no secret)."""
        return self.model_dump(
            mode="json",
            include={
                "sources",
                "kinds",
                "agent_versions",
                "require_manual_trigger",
                "manual_calls_per_minute",
                "notification_block",
            },
        )

    sources: list[str] = Field(
        min_length=1,
        description="Interaction sources to sweep, in order (e.g. chat, email). One failing "
        "source does not stop the others.",
    )
    kinds: list[SweepKind] = Field(
        ["profiles", "playbooks"],
        min_length=1,
        description="What to generate for each source: profiles, playbooks or both.",
    )
    agent_versions: list[str] = Field(
        ["v1"],
        description="Agent versions whose user playbooks are generated (kinds: playbooks).",
    )
    require_manual_trigger: bool = Field(
        False,
        description="Refuse to run unless profile_extractor_config.manual_trigger is true "
        "(servers where extraction runs only from sweeps). Not needed for manual generation "
        "itself: the server runs it either way.",
    )
    manual_calls_per_minute: int = Field(
        SERVER_MANUAL_LIMIT_PER_MIN,
        ge=1,
        le=600,
        description="Pace of calls to each manual_* route; the server allows 5 per minute "
        "per client IP (H11). Raise it only for a server with rate limits off.",
    )
    notification_block: str = Field(
        NOTIFICATION_BLOCK,
        description="Notification block used when the stall check finds a new stall.",
    )

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return _clean_names(value, "sources")

    @field_validator("agent_versions")
    @classmethod
    def _versions(cls, value: list[str]) -> list[str]:
        cleaned = _clean_names(value, "agent_versions")
        if any(any(c.isspace() for c in v) for v in cleaned):
            raise ValueError("agent_versions must not contain whitespace")
        return cleaned

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: list[SweepKind]) -> list[SweepKind]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _playbooks_need_versions(self) -> SweepParams:
        if "playbooks" in self.kinds and not self.agent_versions:
            raise ValueError("kinds includes 'playbooks': give at least one agent_version")
        return self

    @property
    def spacing_s(self) -> float:
        """Minimum gap between two calls to the same manual_* route (with a safety margin)."""
        return spacing_for(self.manual_calls_per_minute)

    def plan(self) -> SweepPlan:
        """What the prerequisites check needs to know."""
        return SweepPlan(self.sources, self.kinds, self.require_manual_trigger)


class ClearUsersParams(WriterParams):
    """Which users to erase, on which server."""

    def run_again(self) -> dict[str, Any]:
        """What the run journal keeps to run this again (no server, no secret)."""
        return self.model_dump(mode="json", include={"user_ids", "records_dir"})

    user_ids: list[str] = Field(
        min_length=1, description="User ids whose data is erased (exact ids, no blanks)."
    )
    records_dir: BackupLocation = Field(
        default_factory=default_backup_location,
        description="Where each erasure is recorded (erasures-<server>.jsonl, appended before "
        "erasing), so that a restore on this server does not bring the users back: a "
        "directory, URL or block:<name>; empty: REFLEXIO_BACKUP_DIR, else ./backups.",
    )
    listed_before: SkipJsonSchema[dict[str, Listed]] = Field(
        {},
        description="Leave empty: set by the run journal when a run of this erasure died "
        "half-way. Per user, the profile and user-playbook ids that run listed before "
        "clearing: rows among them that clear_user_data anonymised (H9) are deleted by id.",
    )

    @model_validator(mode="after")
    def _listed_users_are_erased(self) -> ClearUsersParams:
        other = sorted(set(self.listed_before) - set(self.user_ids))
        if other:
            raise ValueError(
                f"listed_before names users not in user_ids: {other}; leave listed_before "
                "empty (the run journal sets it)"
            )
        return self

    @field_validator("user_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        blank = [i for i, v in enumerate(cleaned) if not v]
        if blank:
            raise ValueError(
                f"user_ids has blank entries at position(s) {blank}: give exact user ids"
            )
        return list(dict.fromkeys(cleaned))
