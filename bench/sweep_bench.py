"""The manual-generation sweep against a server with its rate limits ON (H11).

A fresh local stack with ``rate_limits=True`` (5/min per client IP on each manual_* route),
the seed conversations published over S sources, then ``manual_sweep`` over those sources
(profiles and playbooks, agent_version v1) in a ``prefect_test_harness()`` API. Prints the
achieved calls per minute on each manual_* route against the server's limit, and the 429
answers counted twice: by the flow (``http_429`` per step) and in the server's access log
(lines with `` 429 ``). Bounded: S calls per route, about 13 s apart, so S=3 takes ~1 min.

With ``--sweeps N`` (N > 1), N sweeps of those sources start at once, each in its own
process on the same Prefect API: they pace through the shared Prefect rate limit
(tasks/pacing.py) and take the server's lock in turn. Their calls are merged by start time
to give the calls per minute on each route against the limit.

    PYTHONPATH=. .venv/bin/python bench/sweep_bench.py --sources 3 [--sweeps 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e_bench import load_average
from local_stack.seed import seed
from local_stack.stack import LocalStack
from tasks.sweep import SERVER_MANUAL_LIMIT_PER_MIN


def per_minute(starts: list[float]) -> float | None:
    """Calls per minute over the span of the calls' start times (n - 1 gaps)."""
    if len(starts) < 2 or starts[-1] == starts[0]:
        return None
    return 60.0 * (len(starts) - 1) / (starts[-1] - starts[0])


def most_in_a_minute(starts: list[float]) -> int:
    """The most calls whose start times fall within any 60 s window (what the server counts)."""
    return max((sum(1 for t in starts if s <= t < s + 60) for s in starts), default=0)


SWEEP_PROCESS = """
import json, sys
from flows.sweep import manual_sweep
state = manual_sweep(**json.loads(sys.argv[1]), return_state=True)
summary = state.result(raise_on_failure=False)
print(json.dumps({"state": f"{state.type.value}: {(state.message or '')[:160]}",
                  **(summary if isinstance(summary, dict) else {})}))
"""


def run_sweeps(params: dict[str, Any], count: int) -> tuple[list[dict[str, Any]], float]:
    """`count` sweeps started at once, each in its own process on this Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEP_PROCESS, json.dumps(params)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return outputs, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument(
        "--calls-per-minute",
        type=int,
        default=SERVER_MANUAL_LIMIT_PER_MIN,
        help="the sweep's pacing (SweepParams.manual_calls_per_minute)",
    )
    parser.add_argument("--sweeps", type=int, default=1, help="sweeps started at once")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.sweep import manual_sweep

    sources = [f"src{i}" for i in range(args.sources)]
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    with (
        prefect_test_harness(server_startup_timeout=120),
        LocalStack(state_dir=root, rate_limits=True) as stack,
    ):
        seed(stack.url, sources=tuple(sources))
        log = stack.server.log_path
        log_offset = log.stat().st_size
        params = dict(
            sources=sources,
            reflexio_url=stack.url,
            manual_calls_per_minute=args.calls_per_minute,
            lock_timeout_s=3600,  # the sweeps take the server's lock in turn
        )
        load_before = load_average()
        if args.sweeps > 1:
            outputs, wall = run_sweeps(params, args.sweeps)
        else:
            t0 = time.perf_counter()
            state = manual_sweep(**params, return_state=True)
            wall = time.perf_counter() - t0
            summary = state.result(raise_on_failure=False)
            outputs = [{"state": f"{state.type.value}: {(state.message or '')[:160]}", **summary}]
        load_after = load_average()
        with log.open("rb") as fh:
            fh.seek(log_offset)
            lines = fh.read().decode(errors="replace").splitlines()

    steps = [row for out in outputs for row in out.get("steps", [])]
    calls = sorted(
        (start, row["kind"])
        for out in outputs
        for row, start in zip(out.get("steps", []), out.get("call_starts", []), strict=True)
        if start is not None
    )
    starts = [start for start, _ in calls]
    by_kind: dict[str, list[float]] = {}
    for start, kind in calls:
        by_kind.setdefault(kind, []).append(start)
    log_429 = [line for line in lines if " 429 " in line]
    manual_lines = [line for line in lines if '"POST /api/manual_' in line]  # access log only
    result = {
        "sources": args.sources,
        "sweeps": args.sweeps,
        "pacing_calls_per_min": args.calls_per_minute,
        "server_limit_per_min_per_route": SERVER_MANUAL_LIMIT_PER_MIN,
        "states": [out["state"] for out in outputs],
        "wall_s": round(wall, 1),
        "steps_ok": sum(r["status"] == "ok" for r in steps),
        "steps": len(steps),
        "achieved_calls_per_min": {
            kind: round(v, 2) if (v := per_minute(s)) else None for kind, s in by_kind.items()
        },
        "achieved_calls_per_min_all_routes": round(per_minute(starts) or 0, 2),
        "most_calls_in_any_minute": {kind: most_in_a_minute(s) for kind, s in by_kind.items()},
        "shortest_gap_s": {
            kind: round(min(b - a for a, b in itertools.pairwise(s)), 1)
            for kind, s in by_kind.items()
            if len(s) > 1
        },
        "http_429_flow": sum(r["http_429"] for r in steps),
        "http_429_server_log": len(log_429),
        "manual_requests_in_log": len(manual_lines),
        "paced_wait_s": round(sum(r["paced_wait_s"] for r in steps), 1),
        "load_before": load_before,
        "load_after": load_after,
    }
    print(json.dumps(result, indent=2))
    for line in log_429[:5]:
        print("429:", line)


if __name__ == "__main__":
    main()
