"""The manual-generation sweep against a server with its rate limits ON (H11).

A fresh local stack with ``rate_limits=True`` (5/min per client IP on each manual_* route),
the seed conversations published over S sources, then ``manual_sweep`` over those sources
(profiles and playbooks, agent_version v1) in a ``prefect_test_harness()`` API. Prints the
achieved calls per minute on each manual_* route against the server's limit, and the 429
answers counted twice: by the flow (``http_429`` per step) and in the server's access log
(lines with `` 429 ``). Bounded: S calls per route, about 13 s apart, so S=3 takes ~1 min.

    PYTHONPATH=. .venv/bin/python bench/sweep_bench.py --sources 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.e2e_bench import load_average
from flows.params import SweepParams
from local_stack.seed import seed
from local_stack.stack import LocalStack
from tasks.sweep import SERVER_MANUAL_LIMIT_PER_MIN


def per_minute(starts: list[float]) -> float | None:
    """Calls per minute over the span of the calls' start times (n - 1 gaps)."""
    if len(starts) < 2 or starts[-1] == starts[0]:
        return None
    return 60.0 * (len(starts) - 1) / (starts[-1] - starts[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument(
        "--calls-per-minute",
        type=int,
        default=SERVER_MANUAL_LIMIT_PER_MIN,
        help="the sweep's pacing (SweepParams.manual_calls_per_minute)",
    )
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
        params = SweepParams(
            sources=sources,
            reflexio_url=stack.url,
            manual_calls_per_minute=args.calls_per_minute,
        )
        load_before = load_average()
        t0 = time.perf_counter()
        state = manual_sweep(params=params, return_state=True)
        wall = time.perf_counter() - t0
        load_after = load_average()
        with log.open("rb") as fh:
            fh.seek(log_offset)
            lines = fh.read().decode(errors="replace").splitlines()

    summary = state.result(raise_on_failure=False)
    steps = summary["steps"]
    starts = summary["call_starts"]
    by_kind: dict[str, list[float]] = {}
    for row, start in zip(steps, starts, strict=True):
        if start is not None:
            by_kind.setdefault(row["kind"], []).append(start)
    log_429 = [line for line in lines if " 429 " in line]
    manual_lines = [line for line in lines if '"POST /api/manual_' in line]  # access log only
    result = {
        "sources": args.sources,
        "pacing_calls_per_min": args.calls_per_minute,
        "server_limit_per_min_per_route": SERVER_MANUAL_LIMIT_PER_MIN,
        "state": f"{state.type.value}: {(state.message or '')[:160]}",
        "wall_s": round(wall, 1),
        "steps_ok": sum(r["status"] == "ok" for r in steps),
        "steps": len(steps),
        "achieved_calls_per_min": {
            kind: round(v, 2) if (v := per_minute(s)) else None for kind, s in by_kind.items()
        },
        "achieved_calls_per_min_all_routes": round(per_minute(starts) or 0, 2),
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
