"""Run one profile or playbook regeneration, one restore, or one prompt check, in this process (the
crash tests SIGKILL it).

    python -m tests.reliability.driver '{"reflexio_url": ..., "backup_dir": ...}'
    python -m tests.reliability.driver playbooks '{"reflexio_url": ..., "backup_dir": ...}'
    python -m tests.reliability.driver restore '{"reflexio_url": ..., "backup_file": ...}'
    python -m tests.reliability.driver prompt-check --config ... --reflexio-url ...

Prints "READY" once imported, then "FINAL <state type or exit code> <message>" at the end.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    if sys.argv[1] == "prompt-check":
        from flows.cli import main as cli

        print("READY", flush=True)
        print(f"FINAL {cli(sys.argv[1:])}", flush=True)
        return

    if sys.argv[1] == "restore":
        from flows.params import RestoreParams
        from flows.restore import restore_profiles

        print("READY", flush=True)
        state = restore_profiles(RestoreParams(**json.loads(sys.argv[2])), return_state=True)
        print(f"FINAL {state.type.value} {state.message}", flush=True)
        return

    if sys.argv[1] == "playbooks":
        from flows.params import PlaybookRegenerationParams
        from flows.playbook_regeneration import playbook_regeneration

        print("READY", flush=True)
        params = PlaybookRegenerationParams(**json.loads(sys.argv[2]))
        state = playbook_regeneration(params, return_state=True)
        print(f"FINAL {state.type.value} {state.message}", flush=True)
        return

    from flows.params import RegenerationParams
    from flows.profile_regeneration import profile_regeneration

    print("READY", flush=True)
    params = RegenerationParams(**json.loads(sys.argv[1]))
    state = profile_regeneration(params, return_state=True)
    print(f"FINAL {state.type.value} {state.message}", flush=True)


if __name__ == "__main__":
    main()
