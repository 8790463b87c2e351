"""Run one profile or playbook regeneration, one restore, one clear-user-data, one sweep, or one
prompt check, in this process (the crash tests SIGKILL it).

    python -m tests.reliability.driver '{"reflexio_url": ..., "backup_dir": ...}'
    python -m tests.reliability.driver playbooks '{"reflexio_url": ..., "backup_dir": ...}'
    python -m tests.reliability.driver restore '{"reflexio_url": ..., "backup_file": ...}'
    python -m tests.reliability.driver clear-users '{"reflexio_url": ..., "user_ids": ...}'
    python -m tests.reliability.driver sweep '{"reflexio_url": ..., "sources": ...}'
    python -m tests.reliability.driver prompt-check --config ... --reflexio-url ...

Prints "READY" once imported, then "FINAL <state type or exit code> <message>" at the end.
"""

from __future__ import annotations

import importlib
import json
import sys

FLOWS = {
    "profiles": "profile_regeneration",
    "playbooks": "playbook_regeneration",
    "restore": "restore",
    "clear-users": "clear_users",
    "sweep": "sweep",
}
"""Mode -> its module in flows/."""
FLOW_NAMES = {"restore": "restore_profiles", "sweep": "manual_sweep"}
"""The flow of a module not named like it (the others are their module's namesake)."""


def main() -> None:
    if sys.argv[1] == "prompt-check":
        from flows.cli import main as cli

        print("READY", flush=True)
        print(f"FINAL {cli(sys.argv[1:])}", flush=True)
        return

    mode, raw = (sys.argv[1], sys.argv[2]) if sys.argv[1] in FLOWS else ("profiles", sys.argv[1])
    module_name = FLOWS[mode]
    module = importlib.import_module(f"flows.{module_name}")
    flow = getattr(module, FLOW_NAMES.get(mode, module_name))
    print("READY", flush=True)
    state = flow(**json.loads(raw), return_state=True)
    print(f"FINAL {state.type.value} {state.message}", flush=True)


if __name__ == "__main__":
    main()
