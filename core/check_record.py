"""The record a prompt check leaves on the Prefect API while it works on a server.

Written before the candidate config is applied and removed when the check finishes (config
restored, or candidate promoted), it holds what the next run on that server needs to undo a
check that died on the way (core/check_undo.py): the original config, which kinds the check
regenerates, the PENDING ids that were there before it (every other PENDING row is its own:
only reruns write PENDING rows, and the check held the server's lock), the CURRENT user
playbooks its rerun may tombstone (H6), and, once it sets out to promote, which kinds may
have been upgraded and where their backups are.

The config can hold credentials and the playbooks are users' data: neither is in the
record's repr or in any sentence it makes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

RECORD_VERSION = 1

CheckKind = Literal["profiles", "playbooks"]


class RecordError(ValueError):
    """A stored record that cannot be read; the message says what to do."""


@dataclass(frozen=True)
class UpgradeStarted:
    """A kind the check set out to upgrade: its candidate may be CURRENT on the server."""

    kind: CheckKind
    candidate_count: int
    """PENDING rows of the candidate when the upgrade was sent."""
    candidate_ids: frozenset[str] = frozenset()
    """Playbooks: the candidate's ids (undone by id). Profiles: not kept (a restore from the
    backup and its touched-ids file undoes them)."""
    backup: str | None = None
    """Profiles: the regeneration's backup manifest, what a restore undoes the upgrade from."""
    host: str = ""
    """The machine the backup was written on."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "kind": self.kind,
            "candidate_count": self.candidate_count,
            "candidate_ids": sorted(self.candidate_ids),
            "backup": self.backup,
            "host": self.host,
        }


@dataclass(frozen=True)
class CheckRecord:
    """One prompt check on one server, as long as it has not finished."""

    server: str
    """The server's key (core/identity.py)."""
    flow_run_id: str
    started_at: int
    """Epoch seconds, before the candidate was applied."""
    promote: bool
    profiles: bool
    agent_version: str | None
    profiles_pending_before: frozenset[str]
    playbooks_pending_before: frozenset[str]
    config: Mapping[str, Any] = field(repr=False)
    """The config the server had before the candidate: may hold credentials."""
    playbooks_before: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    """The agent_version's CURRENT user playbooks before the rerun (H6 put-back)."""
    upgrades: tuple[UpgradeStarted, ...] = ()

    @property
    def services(self) -> tuple[str, ...]:
        """The server services whose reruns the check starts."""
        return (("profile_generation",) if self.profiles else ()) + (
            ("playbook_generation",) if self.agent_version else ()
        )

    def upgrade(self, kind: CheckKind) -> UpgradeStarted | None:
        """The upgrade of `kind` the check set out to make, if any."""
        return next((u for u in self.upgrades if u.kind == kind), None)

    def with_upgrade(self, started: UpgradeStarted) -> CheckRecord:
        """The record once the check sets out to upgrade `started.kind`."""
        others = tuple(u for u in self.upgrades if u.kind != started.kind)
        return replace(self, upgrades=(*others, started))

    def without_upgrade(self, kind: CheckKind) -> CheckRecord:
        """The record once `kind`'s rows are back as they were (or were never upgraded)."""
        return replace(self, upgrades=tuple(u for u in self.upgrades if u.kind != kind))

    def describe(self) -> str:
        """Which check, in words (no config, no rows)."""
        kinds = (["profiles"] if self.profiles else []) + (
            [f"user playbooks of {self.agent_version}"] if self.agent_version else []
        )
        started = datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        upgrading = (
            f"; it had set out to upgrade {', '.join(u.kind for u in self.upgrades)}"
            if self.upgrades
            else ""
        )
        return (
            f"prompt check (flow run {self.flow_run_id}) started {started} on {self.server}, "
            f"regenerating {' and '.join(kinds)}"
            f"{' with promote' if self.promote else ''}{upgrading}"
        )

    def to_json(self) -> str:
        """The record as stored."""
        return json.dumps(
            {
                "version": RECORD_VERSION,
                "server": self.server,
                "flow_run_id": self.flow_run_id,
                "started_at": self.started_at,
                "promote": self.promote,
                "profiles": self.profiles,
                "agent_version": self.agent_version,
                "profiles_pending_before": sorted(self.profiles_pending_before),
                "playbooks_pending_before": sorted(self.playbooks_pending_before),
                "config": dict(self.config),
                "playbooks_before": [dict(r) for r in self.playbooks_before],
                "upgrades": [u.as_dict() for u in self.upgrades],
            }
        )

    @classmethod
    def from_json(cls, stored: str | Mapping[str, Any], name: str) -> CheckRecord:
        """The record stored under `name`; RecordError when it is not one this code wrote."""
        try:
            data = _mapping(json.loads(stored) if isinstance(stored, str) else stored)
            version = data.get("version")
            if version != RECORD_VERSION:
                raise _Unreadable(f"version {version!r}, this code reads {RECORD_VERSION}")
            return cls(
                server=str(data["server"]),
                flow_run_id=str(data["flow_run_id"]),
                started_at=int(data["started_at"]),
                promote=bool(data["promote"]),
                profiles=bool(data["profiles"]),
                agent_version=data["agent_version"],
                profiles_pending_before=frozenset(map(str, data["profiles_pending_before"])),
                playbooks_pending_before=frozenset(map(str, data["playbooks_pending_before"])),
                config=_mapping(data["config"]),
                playbooks_before=tuple(_mapping(r) for r in data["playbooks_before"]),
                upgrades=tuple(_upgrade(u) for u in data["upgrades"]),
            )
        except _Unreadable as exc:
            reason = str(exc)
        except KeyError as exc:
            reason = f"no field {exc}"
        except (ValueError, TypeError) as exc:  # values are not echoed: the config is in there
            reason = f"a malformed field ({type(exc).__name__})"
        raise RecordError(
            f"The prompt-check record '{name}' cannot be read ({reason}). Look at the server "
            "(its config, PENDING rows) by hand, then delete the block "
            f"'{name}' (Prefect UI: Blocks)."
        )


class _Unreadable(ValueError):
    """A record of another version."""


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _upgrade(value: Any) -> UpgradeStarted:
    data = _mapping(value)
    return UpgradeStarted(
        kind=data["kind"],
        candidate_count=int(data["candidate_count"]),
        candidate_ids=frozenset(map(str, data["candidate_ids"])),
        backup=data["backup"],
        host=str(data["host"]),
    )
