"""Pacing against a server with its per-IP rate limits ON (H11: 5/min per manual_* route)."""

from __future__ import annotations

import itertools

import pytest

from flows.sweep import manual_sweep
from local_stack.stack import LocalStack
from tasks.sweep import SERVER_MANUAL_LIMIT_PER_MIN

pytestmark = pytest.mark.integration


@pytest.mark.slow  # ~70 s; CI checks the shared pace below, bench/sweep_bench.py the 429s
@pytest.mark.timeout(240)
def test_six_manual_calls_stay_under_the_limit(tmp_path, prefect_api: None):
    """Six profile calls on one route: unpaced, the 6th would get 429 within the minute.

    Bounded: ~70 s (5 gaps of 13 s). Asserts on 429 counts and call spacing (our own
    recorded start times), not on wall-clock totals; timings belong in bench/.
    """
    with LocalStack(rate_limits=True, state_dir=tmp_path) as limited:
        params = dict(
            sources=[f"s{i}" for i in range(6)],
            kinds=["profiles"],
            reflexio_url=limited.url,
        )
        state = manual_sweep(**params, return_state=True)

    assert state.is_completed(), state.message
    rows = state.result()["steps"]
    assert [r["source"] for r in rows] == [f"s{i}" for i in range(6)]
    assert sum(r["http_429"] for r in rows) == 0
    assert all(r["status"] == "ok" for r in rows)
    starts = state.result()["call_starts"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The server needs >= 12 s between calls (5/min); the pacer plans 13 s, and sleep jitter
    # of a few ms may move one start a little, never by the 1 s margin.
    assert all(gap >= 60 / SERVER_MANUAL_LIMIT_PER_MIN for gap in gaps), gaps
    assert starts[5] - starts[0] >= 60.0, "six calls on one route span more than a minute"
    assert all(r["paced_wait_s"] > 0 for r in rows[1:]), "calls 2-6 waited for their turn"


TURNS_SCRIPT = """
import sys, time
from tasks.pacing import pacer_for
pacer = pacer_for(sys.argv[1], "manual_profile_generation", float(sys.argv[2]))
for _ in range(3):
    pacer.acquire()
    print(time.time(), flush=True)
"""


@pytest.mark.timeout(120)
def test_processes_on_one_prefect_api_share_one_pace(prefect_api: None):
    """Two processes pace the same route of the same server through one Prefect limit:
    their six turns, merged, are at least the interval apart (and the limit is set up once,
    then found as it is)."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    from deployments.catalogue import rate_limit_name
    from tasks.pacing import ensure_rate_limit

    url, interval = "http://127.0.0.1:1", 2.0
    name = rate_limit_name(url, "manual_profile_generation")
    assert ensure_rate_limit(name, interval) == "created"
    assert ensure_rate_limit(name, interval) == "exists"
    assert ensure_rate_limit(name, 3.0) == "updated"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TURNS_SCRIPT, url, str(interval)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    turns = sorted(float(line) for p in procs for line in p.communicate(timeout=100)[0].split())
    assert all(p.returncode == 0 for p in procs)
    assert len(turns) == 6
    gaps = [b - a for a, b in itertools.pairwise(turns)]
    assert all(gap >= interval - 0.05 for gap in gaps), gaps
