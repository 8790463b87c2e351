"""What the delta proof (core/delta.py) adds to a pass over profiles, against the proof it
replaced (the statistics read before and after a listing must be equal), on the real server.

    python -m bench.delta_bench --rows 100000

A scratch server (rate limits off, retention cap raised) is seeded through
`local_stack.bulk_seed` with `rows` CURRENT + `rows` PENDING + `rows` ARCHIVED profiles,
SAME_SECOND of the ARCHIVED rows in one second. Then, with one client and only the id
snapshot as sink (no backup, no frames), after one untimed warm-up pass, each proof reads
every status `--repeat` times (default REPEAT), alternating:

- `old`: statistics, the strict walk of every status, statistics, equal counts;
- `delta`: statistics, the tolerant walk, statistics, the delta listing since the pass
  start minus DELTA_MARGIN_S, the count check.

Twice: with the rows stamped a day ago (a quiet night: the delta lists nothing), and every
status stamped in one second now (right after an upgrade, which stamps its own second on
every row it touches: the delta lists every row again). Printed:
one JSON line per case, seconds per pass (median), the ratio, requests per pass, the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.e2e_bench import load_average
from local_stack.bulk_seed import STATUSES, ProfileSeed
from local_stack.stack import LocalStack

SAME_SECOND = 50_000
REPEAT = 3
DAY = 86_400


def _old_proof(client: Any) -> int:
    """The proof before core/delta.py: equal statistics around a strict walk."""
    from core.kinds import PROFILES
    from core.listing import check_against_statistics
    from core.sinks import ReadRequest, consume
    from tasks.ops import _counts, _pages

    request = ReadRequest(STATUSES, count_at=int(time.time()))
    before = _counts(client.get_profile_statistics())
    reading = consume(PROFILES, _pages(client, PROFILES, request, before), request)
    after = _counts(client.get_profile_statistics())
    assert reading.counted is not None
    check_against_statistics("profiles", reading.counted.counts(), before, after, STATUSES)
    return len(reading.snapshot.all_ids())


def _delta_proof(client: Any) -> int:
    from core.kinds import PROFILES
    from core.sinks import ReadRequest
    from tasks.ops import read_with

    return len(read_with(client, PROFILES, ReadRequest(STATUSES)).snapshot.all_ids())


def _passes(url: str, rows: int, repeat: int) -> dict[str, Any]:
    """Both proofs, `repeat` times each, alternating; median seconds and requests per pass."""
    import httpx

    from reflexio_api import ReflexioClient, ReflexioSettings

    with ReflexioClient(ReflexioSettings(url=url, read_timeout_s=300)) as client:
        _old_proof(client)  # warm-up, untimed: the first pass reads the data file cold
    seconds: dict[str, list[float]] = {"old": [], "delta": []}
    requests: dict[str, int] = {}
    proofs: dict[str, Callable[[Any], int]] = {"old": _old_proof, "delta": _delta_proof}
    for _ in range(repeat):
        for name, proof in proofs.items():
            sent: list[httpx.Request] = []
            settings = ReflexioSettings(url=url, read_timeout_s=300)
            with ReflexioClient(settings) as client:
                client._http.event_hooks["request"].append(sent.append)
                started = time.perf_counter()
                listed = proof(client)
                seconds[name].append(time.perf_counter() - started)
            assert listed == 3 * rows, (name, listed)
            requests[name] = len(sent)
    old, delta = statistics.median(seconds["old"]), statistics.median(seconds["delta"])
    return {
        "old_s": round(old, 1),
        "delta_s": round(delta, 1),
        "delta_over_old": round(delta / old, 2),
        "added_s": round(delta - old, 1),
        "old_requests": requests["old"],
        "delta_requests": requests["delta"],
        "old_all_s": [round(s, 1) for s in seconds["old"]],
        "delta_all_s": [round(s, 1) for s in seconds["delta"]],
    }


def measure(rows: int, users: int, stamped: str, repeat: int = REPEAT) -> dict[str, Any]:
    """Seed a scratch server, rows stamped a day ago or now, and time both proofs."""
    figures: dict[str, Any] = {"rows_per_status": rows, "stamped": stamped}
    figures["load_before"] = load_average()
    recent = stamped == "now"
    base = int(time.time()) - (0 if recent else DAY)
    with tempfile.TemporaryDirectory(prefix="delta-bench-") as scratch:
        limit = {"REFLEXIO_ROW_LIMIT_PROFILES": str(10 * rows)}
        with LocalStack(state_dir=Path(scratch) / "reflexio", extra_env=limit) as stack:
            specs = [
                ProfileSeed(
                    s,
                    rows,
                    users,
                    same_second=rows if recent else SAME_SECOND if s == "archived" else 0,
                    base_time=base,
                )
                for s in STATUSES
            ]
            stack.bulk_seed(specs)
            figures.update(_passes(stack.url, rows, repeat))
    figures["load_after"] = load_average()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per status")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=REPEAT, help="passes per proof")
    parser.add_argument("--only", choices=("a day ago", "now"), help="one case only")
    args = parser.parse_args(argv)
    for stamped in [args.only] if args.only else ["a day ago", "now"]:
        print(json.dumps(measure(args.rows, args.users, stamped, args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
