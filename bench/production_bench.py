"""The post-rerun pipeline at production size, against the real server.

    python -m bench.production_bench --rows 100000 --users 10000
    python -m bench.production_bench --rows 1000000 --users 100000

For each size, a scratch server (its own state dir, rate limits off, its retention cap
raised above the seeded rows) is seeded through `local_stack.bulk_seed` (its SQLite written
while it is stopped) with `rows` CURRENT + `rows` PENDING + `rows` ARCHIVED profiles over
`users` users, SAME_SECOND of the ARCHIVED rows sharing one second as after a large upgrade.
Then, in a Prefect flow, the engine's own steps run as a nightly run does after its rerun:

1. read every status completely (proven against the server's counts), streamed into the
   backup file and the gate's baseline frame;
2. read PENDING again into the candidate frame (what the engine does after the rerun);
3. the gate (local worker processes, or `--dask`: a 2-worker LocalCluster);
4. the upgrade, and 5. the verification by id (a third complete read).

Printed (one JSON line per size): seconds per step, rows listed per second, the floor (one
unpaged request for the CURRENT rows, what a listing cannot beat), listing time / floor,
the flow process' peak RSS, the largest child's peak RSS (the Reflexio server or a gate
worker), the load average. The upgrade
is skipped above `--max-upgrade-rows` (default 200,000): reflexio-ai 0.2.32 cannot upgrade
more than 250,000 ARCHIVED rows (it deletes them with one `IN (...)` of every id, over
SQLite's parameter limit) and answers 504 after its 60 s request limit long before.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import httpx

from bench.e2e_bench import load_average
from local_stack.bulk_seed import STATUSES, ProfileSeed
from local_stack.stack import LocalStack

SAME_SECOND = 50_000
"""ARCHIVED rows sharing one second. A second is the finest window the server filters on,
so it comes back in one answer; the server cuts every request at 60 s, which one answer of
1M rows exceeds (measured: 504 after 60.0 s)."""


def _timed(figures: dict[str, Any], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = step()
    figures[f"{name}_s"] = round(time.perf_counter() - started, 1)
    return result


def _floor(url: str, rows: int) -> float | str:
    """Seconds for one unpaged request of the CURRENT rows (or why it could not be had)."""
    started = time.perf_counter()
    try:
        response = httpx.get(
            f"{url}/api/get_all_profiles",
            params={"status_filter": "current", "limit": rows + 1},
            headers={"User-Agent": "reflexio-pipelines-bench"},
            timeout=600,
        )
    except httpx.HTTPError as exc:
        return f"failed: {type(exc).__name__}"
    elapsed = round(time.perf_counter() - started, 1)
    if response.status_code != 200:
        return f"HTTP {response.status_code} after {elapsed} s"
    return elapsed


def pipeline(url: str, rows: int, backup_dir: Path, dask: bool, upgrade: bool) -> dict:
    """The engine's post-rerun steps in one flow; returns the figures."""
    from prefect import flow

    from core.kinds import PROFILES, STATUSES
    from core.live import Scope
    from core.sinks import BackupTarget, ReadRequest
    from core.state import expected_after_upgrade, verify_ids
    from gate import GatePolicy
    from reflexio_api import ReflexioSettings
    from tasks.ops import PrefectOps

    @flow(name="production-bench")
    def run() -> dict:
        figures: dict[str, Any] = {}
        ops = PrefectOps(ReflexioSettings(url=url, read_timeout_s=120), PROFILES, "none")
        target = BackupTarget(backup_dir, url, "bench-run")
        before = _timed(
            figures,
            "read_all_and_backup",
            lambda: ops.read(ReadRequest(STATUSES, backup=target, baseline=Scope())),
        )
        candidate = _timed(
            figures,
            "read_pending",
            lambda: ops.read(ReadRequest(("pending",), candidate=True)),
        )
        figures["rows_listed_per_s"] = round(
            4 * rows / (figures["read_all_and_backup_s"] + figures["read_pending_s"])
        )
        address = None
        if dask:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
            address = cluster.scheduler_address
        report = _timed(
            figures,
            "gate",
            lambda: ops.gate(
                candidate.candidate, before.baseline, GatePolicy(), "production-bench", address
            ),
        )
        figures["gate_verdict"] = report.verdict.value
        if not upgrade:
            return figures
        expected = expected_after_upgrade(PROFILES, before.snapshot, only_affected_users=True)
        result = _timed(figures, "upgrade", lambda: ops.upgrade(True, len(expected.promoted)))
        figures["upgrade_message"] = result.get("message")
        after = _timed(figures, "verify_by_id", lambda: ops.read(ReadRequest(STATUSES)))
        verify_ids(expected, after.snapshot, before.snapshot.all_ids())
        figures["verified"] = True
        return figures

    return run()


def measure(rows: int, users: int, dask: bool, max_upgrade_rows: int) -> dict:
    """Seed a scratch server with `rows` per status and run the pipeline on it."""
    figures: dict[str, Any] = {"rows_per_status": rows, "users": users, "dask": dask}
    figures["load_before"] = load_average()
    with tempfile.TemporaryDirectory(prefix="production-bench-") as scratch:
        state = Path(scratch) / "reflexio"
        limit = {"REFLEXIO_ROW_LIMIT_PROFILES": str(10 * rows)}
        with LocalStack(state_dir=state, extra_env=limit) as stack:
            specs = [
                ProfileSeed(s, rows, users, same_second=SAME_SECOND if s == "archived" else 0)
                for s in STATUSES
            ]
            seeded = _timed(figures, "seed", lambda: stack.bulk_seed(specs))
            figures["seed_rows_per_s"] = round(seeded.rows_per_second)
            figures["floor_current_s"] = _floor(stack.url, rows)
            started = time.perf_counter()
            figures.update(
                pipeline(stack.url, rows, Path(scratch) / "backups", dask, rows <= max_upgrade_rows)
            )
            figures["pipeline_s"] = round(time.perf_counter() - started, 1)
            backup = sorted((Path(scratch) / "backups").glob("*.jsonl.gz"))
            figures["backup_mb"] = round(sum(p.stat().st_size for p in backup) / 2**20)
    if isinstance(figures["floor_current_s"], float):
        per_status = figures["read_all_and_backup_s"] / 3
        figures["listing_over_floor"] = round(per_status / figures["floor_current_s"], 2)
    figures["flow_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures["largest_child_peak_rss_mb"] = round(children / 1024)  # the server or a gate worker
    figures["load_after"] = load_average()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per status")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--dask", action="store_true", help="gate on a 2-worker LocalCluster")
    parser.add_argument("--max-upgrade-rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    figures = measure(args.rows, args.users, args.dask, args.max_upgrade_rows)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
