"""End to end: the official SDK's regeneration sequence against this project's flow.

For each N: a fresh local stack (real reflexio-ai server + stand-in LLM), N synthetic users
seeded from local_stack.seed.CONVERSATIONS (renamed), snapshot "seeded". Then, per
repetition (the order of the modes rotates), restore the snapshot, set the stand-in's
fixed delay per LLM call, and time:

(a) sdk:  reflexio-client ``ReflexioClient(url_endpoint=url)``,
          ``rerun_profile_generation(wait_for_response=True)`` then ``upgrade_profiles()``,
          run in a subprocess with the SDK's own venv (Python >= 3.12, bench/_sdk_venv.py),
          timed inside that subprocess (interpreter start and imports excluded);
(a') sdk_after_stall_read: the same after one GET /stall_state, which is the flow's first
          call: on reflexio-ai 0.2.32 the first read of the stall state makes every later
          LLM call of that server process cost more (RESULTS.md), so (b)/(a') is the cost of
          orchestration alone and (b)/(a) what a user sees on a freshly started server;
(b) flow: ``profile_regeneration(..., return_state=True)`` (stall check,
          guard, rerun, gate, backup, upgrade, verify) in a subprocess of this project's
          Python (timed inside, imports excluded; ``--flow-in-process`` runs it here instead),
          against a ``prefect_test_harness()`` API started once before all runs (start-up
          excluded; the subprocess gets its PREFECT_API_URL). Its task times are read back
          from the Prefect API.

The stand-in LLM answers each call on a thread of this process, so by default the flow runs
in a subprocess and this process only serves the stand-in.

The server's own time is completed_at - started_at of the rerun operation (the server
stores whole seconds, so it is +-1 s); overhead = wall time - server time.

    PYTHONPATH=. .venv/bin/python bench/e2e_bench.py --users 5 20 40 80 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

from bench._sdk_venv import SDK_VERSION, ensure_sdk_venv
from local_stack.seed import seed, synthetic_users
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings

SDK_SCRIPT = """
import json, sys, time
t_import = time.perf_counter()
from reflexio import ReflexioClient
t0 = time.perf_counter()
client = ReflexioClient(url_endpoint=sys.argv[1])
rerun = client.rerun_profile_generation(wait_for_response=True)
t1 = time.perf_counter()
upgrade = client.upgrade_profiles()
t2 = time.perf_counter()
print(json.dumps({
    "import_s": t0 - t_import, "rerun_s": t1 - t0, "upgrade_s": t2 - t1, "total_s": t2 - t0,
    "rerun": rerun.model_dump(mode="json") if rerun is not None else None,
    "upgrade": upgrade.model_dump(mode="json"),
}))
"""


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its finished children so far (from /proc):
    the server forks a child for every LLM call, which does most of its work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def server_seconds(url: str) -> tuple[int | None, str]:
    """completed_at - started_at of the latest profile operation, and its status."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        status = client.get_operation_status("profile_generation")
        counts = client.get_profile_statistics()
    if status is None or status.completed_at is None:
        return None, "none"
    return status.completed_at - status.started_at, (
        f"{status.status} {status.processed_users}/{status.total_users} users; "
        f"after: {counts.current_count} current, {counts.pending_count} pending, "
        f"{counts.archived_count} archived"
    )


def run_sdk(python: Path, url: str) -> dict:
    """The SDK sequence in its own interpreter; its timings come from inside."""
    out = subprocess.run(
        [str(python), "-c", SDK_SCRIPT, url], capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        raise RuntimeError(f"SDK run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


FLOW_SCRIPT = """
import json, sys, time
from pathlib import Path
from bench.e2e_bench import task_breakdown
from flows.params import RegenerationParams
from flows.profile_regeneration import profile_regeneration
params = dict(reflexio_url=sys.argv[1], backup_dir=Path(sys.argv[2]))
t0 = time.perf_counter()
state = profile_regeneration(**params, return_state=True)
wall = time.perf_counter() - t0
print(json.dumps({
    "wall_s": wall, "outcome": f"{state.type.value}: {state.message or ''}",
    "tasks": task_breakdown(state.state_details.flow_run_id),
}))
"""


def task_breakdown(flow_run_id: UUID, settle_s: float = 15.0) -> dict[str, float]:
    """Seconds spent in each task of a finished flow run, summed by task name, read back
    from the Prefect API (task run states arrive as events, so wait until all have ended)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + settle_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flow_filter)
            if all(r.end_time for r in runs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    seconds: dict[str, float] = {}
    for run in runs:
        if run.start_time and run.end_time:
            name = run.name.rsplit("-", 1)[0]  # "list-profiles-a1b" -> "list-profiles"
            spent = (run.end_time - run.start_time).total_seconds()
            seconds[name] = round(seconds.get(name, 0.0) + spent, 3)
    return seconds


def run_flow_subprocess(url: str, backup_dir: Path) -> tuple[float, str, dict[str, float]]:
    """The flow in its own interpreter (like the SDK), on the harness's API; timed inside."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    out = subprocess.run(
        [sys.executable, "-c", FLOW_SCRIPT, url, str(backup_dir)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"flow run failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["wall_s"], result["outcome"][:140], result["tasks"]


def run_flow(url: str, backup_dir: Path) -> tuple[float, str, dict[str, float]]:
    """The profile regeneration flow in this process; wall time measured around the call."""
    from flows.profile_regeneration import profile_regeneration

    params = dict(reflexio_url=url, backup_dir=backup_dir)
    t0 = time.perf_counter()
    state = profile_regeneration(**params, return_state=True)
    wall = time.perf_counter() - t0
    outcome = f"{state.type.value}: {(state.message or '')[:120]}"
    return wall, outcome, task_breakdown(state.state_details.flow_run_id)


def breakdown(wall_s: float, tasks: dict[str, float]) -> dict[str, object]:
    """A flow run's wall time split into waiting on the rerun, the other tasks, and what ran
    outside any task (flow engine, lock, artifacts, events); empty for the SDK."""
    if not tasks:
        return {}
    waiting = tasks.get("wait-for-operation", 0.0)
    in_tasks = sum(tasks.values())
    return {
        "wait_task_s": round(waiting, 2),
        "other_tasks_s": round(in_tasks - waiting, 2),
        "outside_tasks_s": round(wall_s - in_tasks, 2),
        "tasks": tasks,
    }


MODES = ("sdk", "sdk_after_stall_read", "flow")


def read_stall_state(url: str) -> None:
    """What the flow's stall check does first: GET /stall_state (see RESULTS.md: the first
    read makes the server's later LLM calls cost more, so the SDK is timed after one too)."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        client.get_stall_state()


def time_mode(
    mode: str, url: str, sdk_python: Path, backups: Path, in_process: bool
) -> tuple[float, str, dict[str, float]]:
    """Run one sequence; its wall time, a one-line outcome and (flow only) its task times."""
    if mode == "flow":
        flow_runner = run_flow if in_process else run_flow_subprocess
        return flow_runner(url, backups)
    if mode == "sdk_after_stall_read":
        read_stall_state(url)
    result = run_sdk(sdk_python, url)
    outcome = (
        f"rerun {result['rerun_s']:.1f} s, upgrade {result['upgrade_s']:.2f} s "
        f"(SDK import {result['import_s']:.2f} s, not counted)"
    )
    return result["total_s"], outcome, {}


def bench_n(
    n: int, repeats: int, delay_s: float, sdk_python: Path, root: Path, in_process: bool
) -> list[dict]:
    """Seed one stack with N users and time every mode `repeats` times, each on a freshly
    restored server."""
    rows: list[dict] = []
    with LocalStack(state_dir=root / f"n{n}") as stack:
        t0 = time.perf_counter()
        seed(stack.url, users=synthetic_users(n))
        print(f"N={n}: seeded in {time.perf_counter() - t0:.1f} s", flush=True)
        stack.snapshot("seeded")
        for rep in range(1, repeats + 1):
            # Rotate the order, so no mode always runs first.
            shift = (rep - 1) % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                stack.restore("seeded")
                stack.llm.configure(delay_s=delay_s)
                load_before = load_average()
                server_pid = stack.server._process.pid  # type: ignore[union-attr]
                cpu_before = process_cpu_s(server_pid)
                wall, outcome, tasks = time_mode(
                    mode, stack.url, sdk_python, root / "backups", in_process
                )
                server_cpu = process_cpu_s(server_pid) - cpu_before
                server_s, server_note = server_seconds(stack.url)
                row = {
                    "n": n,
                    "rep": rep,
                    "mode": mode,
                    "wall_s": round(wall, 2),
                    "server_s": server_s,
                    "overhead_s": None if server_s is None else round(wall - server_s, 2),
                    "server_cpu_s": round(server_cpu, 2),
                    "llm_calls": sum(stack.llm.state.calls.values()),
                    "load_before": load_before,
                    "load_after": load_average(),
                    "outcome": outcome,
                    "server": server_note,
                    **breakdown(wall, tasks),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[5, 20, 40])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2, help="stand-in delay per LLM call")
    parser.add_argument(
        "--flow-in-process",
        action="store_true",
        help="run the flow in this process, beside the stand-in LLM's thread (default: in a "
        "subprocess, so the stand-in's process is as idle as during the SDK run)",
    )
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    sdk_python = ensure_sdk_venv()
    root = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    print(f"reflexio-client {SDK_VERSION} at {sdk_python}; state in {root}", file=sys.stderr)
    rows: list[dict] = []
    with prefect_test_harness(server_startup_timeout=120):
        for n in args.users:
            rows += bench_n(n, args.repeats, args.delay, sdk_python, root, args.flow_in_process)

    print(
        "\n| N | rep | sdk s | sdk after stall read s | flow s | flow/sdk | "
        "flow/sdk after stall read | server s (sdk, after read, flow) | flow outside rerun s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.users:
        for rep in range(1, args.repeats + 1):
            pick = {r["mode"]: r for r in rows if r["n"] == n and r["rep"] == rep}
            a, w, f = pick["sdk"], pick["sdk_after_stall_read"], pick["flow"]
            print(
                f"| {n} | {rep} | {a['wall_s']} | {w['wall_s']} | {f['wall_s']} | "
                f"{f['wall_s'] / a['wall_s']:.2f} | {f['wall_s'] / w['wall_s']:.2f} | "
                f"{a['server_s']}, {w['server_s']}, {f['server_s']} | "
                f"{f['wall_s'] - f['wait_task_s']:.2f} |"
            )


if __name__ == "__main__":
    main()
