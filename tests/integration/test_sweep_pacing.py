"""Pacing against a server with its per-IP rate limits ON (H11: 5/min per manual_* route)."""

from __future__ import annotations

import itertools

import pytest

from flows.params import SweepParams
from flows.sweep import manual_sweep
from local_stack.stack import LocalStack
from tasks.sweep import SERVER_MANUAL_LIMIT_PER_MIN

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_six_manual_calls_stay_under_the_limit(tmp_path, prefect_api: None):
    """Six profile calls on one route: unpaced, the 6th would get 429 within the minute.

    Bounded: ~70 s (5 gaps of 13 s). Asserts on 429 counts and call spacing (our own
    recorded start times), not on wall-clock totals; timings belong in bench/.
    """
    with LocalStack(rate_limits=True, state_dir=tmp_path) as limited:
        params = SweepParams(
            sources=[f"s{i}" for i in range(6)],
            kinds=["profiles"],
            reflexio_url=limited.url,
        )
        state = manual_sweep(params=params, return_state=True)

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
