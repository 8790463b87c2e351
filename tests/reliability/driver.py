"""Run one profile regeneration in this process (the crash tests SIGKILL it).

    python -m tests.reliability.driver '{"reflexio_url": ..., "backup_dir": ...}'

Prints "READY" once imported, then "FINAL <state type> <message>" at the end.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from flows.params import RegenerationParams
    from flows.profile_regeneration import profile_regeneration

    print("READY", flush=True)
    params = RegenerationParams(**json.loads(sys.argv[1]))
    state = profile_regeneration(params, return_state=True)
    print(f"FINAL {state.type.value} {state.message}", flush=True)


if __name__ == "__main__":
    main()
