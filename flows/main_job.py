"""`make main`: the nightly regeneration end to end on the local default.

Starts the local Reflexio server + stand-in LLM (state in .state/reflexio, port 8081),
seeds it when it has no profiles, then runs the profile flow and the playbook flow for v1
on Prefect's local API (the ephemeral API when PREFECT_API_URL is unset). Prints where to
look, and exits 1 when a flow ended Failed (0 when both completed; 2 when the local
server could not start).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before Prefect is imported (it is imported inside main()): no telemetry, no network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The ephemeral API's start (Prefect's default wait: 20 s) took longer while other work
# shared this 2-core machine, and the job failed before its first flow.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

STATE_DIR = Path(".state/reflexio")
PORT = 8081


def main() -> int:
    """Run the nightly job; returns the process exit code."""
    from core.kinds import PROFILES, user_playbooks
    from flows.playbook_regeneration import playbook_regeneration
    from flows.profile_regeneration import profile_regeneration
    from local_stack.seed import seed
    from local_stack.stack import LocalStack
    from reflexio_api import ReflexioClient, ReflexioSettings

    backups = Path("backups").resolve()
    with LocalStack(state_dir=STATE_DIR.resolve(), port=PORT) as stack:
        settings = ReflexioSettings(url=stack.url)
        with ReflexioClient(settings) as client:
            if client.get_profile_statistics().current_count == 0:
                print("Seeding the local server (first run, about a minute)...")
                seed(stack.url, sources=("chat", "email"))
        print(f"Reflexio server: {stack.url}")
        results = []
        profile_state = profile_regeneration(
            reflexio_url=stack.url, backup_dir=str(backups), return_state=True
        )
        results.append(("profile-regeneration", profile_state, PROFILES.artifact_prefix(stack.url)))
        playbook_state = playbook_regeneration(
            reflexio_url=stack.url, backup_dir=str(backups), agent_version="v1", return_state=True
        )
        results.append(
            (
                "playbook-regeneration v1",
                playbook_state,
                user_playbooks("v1").artifact_prefix(stack.url),
            )
        )

    api = os.environ.get("PREFECT_API_URL")
    print("\n=== Nightly regeneration ===")
    failed = False
    for name, state, prefix in results:
        failed |= not state.is_completed()
        print(f"- {name}: {state.type.value} - {state.message}")
        print(
            f"  artifacts: {prefix}-summary, {prefix}-gate-report, {prefix}-gate-checks, "
            f"{prefix}-progress  (prefect artifact inspect {prefix}-summary)"
        )
    print(f"Backups: {backups}")
    if api:
        print(f"Prefect UI: {api.removesuffix('/api')}/artifacts")
    else:
        print(
            "Prefect ran on its ephemeral local API (PREFECT_API_URL unset): the runs and "
            "artifacts live in the local Prefect database (~/.prefect); start "
            "`prefect server start` to browse them, or set PREFECT_API_URL."
        )
    return 1 if failed else 0


def run() -> int:
    """main(), with the local stack's start-up errors said in one line (exit 2)."""
    from local_stack.reflexio_server import ServerStartError
    from local_stack.server_venv import ServerInstallError

    try:
        return main()
    except (ServerInstallError, ServerStartError) as exc:
        print(f"error: the local Reflexio server could not start: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
