"""Run names that say what a run works on, so the run list and the alerts tell runs apart:
the server (`host:port`, as `core.identity.server_key` spells it) and the kind,
agent_version, sources or users, e.g. `playbooks v2 @ 10.0.0.5:8081 (dry run)`.

Each function is a Prefect `flow_run_name` callable: it reads the run's flat parameters
(flows/flat_params.py). A name is never worth
failing a run for: parameters too broken to name fall back to the flow's own name, and the
run then fails on its parameters as it would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.runtime import flow_run

from core.identity import server_key
from reflexio_api import ReflexioSettings


def _params() -> dict[str, Any]:
    return dict(flow_run.parameters)


def _server(params: dict[str, Any]) -> str:
    url = params.get("reflexio_url")
    settings = ReflexioSettings(url=url) if url else ReflexioSettings()  # validates the URL
    return server_key(settings.url)


def _joined(values: Any) -> str:
    return ", ".join(str(v) for v in values or [])


def _named(fallback: str, describe: Callable[[dict[str, Any]], str]) -> Callable[[], str]:
    def name() -> str:
        try:
            params = _params()
            return f"{describe(params)} @ {_server(params)}"
        except Exception:  # a name never fails a run (see the module docstring)
            return fallback

    return name


def _notes(params: dict[str, Any], *flags: str) -> str:
    notes = [flag.replace("_", " ") for flag in flags if params.get(flag)]
    if params.get("sources"):
        notes.insert(0, f"sources {_joined(params['sources'])}")
    return f" ({'; '.join(notes)})" if notes else ""


def _prompt_check(params: dict[str, Any]) -> str:
    kinds = ["profiles"] if params.get("regenerate_profiles", True) else []
    if params.get("agent_version"):
        kinds.append(f"playbooks {params['agent_version']}")
    return f"prompt check {' + '.join(kinds) or 'nothing'}" + _notes(params, "promote")


def _restore(params: dict[str, Any]) -> str:
    backup = str(params.get("backup_file") or "?").rstrip("/").rsplit("/", 1)[-1]
    return f"restore {backup.removesuffix('.manifest.json')}" + _notes(params, "dry_run")


profiles = _named(
    "profile-regeneration", lambda p: "profiles" + _notes(p, "dry_run", "require_approval")
)
playbooks = _named(
    "playbook-regeneration",
    lambda p: (
        f"playbooks {p.get('agent_version', 'v1')}" + _notes(p, "dry_run", "require_approval")
    ),
)
sweep = _named(
    "manual-generation-sweep",
    lambda p: f"sweep {_joined(p.get('sources'))} ({_joined(p.get('kinds'))})",
)
stall_watch = _named("stall-watch", lambda p: "stall watch")
clear_users = _named("clear-user-data", lambda p: f"clear {len(p.get('user_ids') or [])} user(s)")
restore = _named("restore-profiles", _restore)
prompt_check = _named("prompt-change", _prompt_check)
