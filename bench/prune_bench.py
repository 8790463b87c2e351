"""The server's cost of deleting old ARCHIVED profiles by id, per batch size (issue 21, the
prune ahead of an upgrade: core/prune.py), on the real server.

    python -m bench.prune_bench --rows 100000 --batches 1000 5000 20000

A scratch server (rate limits off, retention cap raised) is seeded through
`local_stack.bulk_seed` with `rows` CURRENT + `rows` ARCHIVED profiles (the search index
holds both: the server deletes a batch's index rows in chunks of 500 that each scan it,
H17). Then, for each batch size in turn, `--repeat` batches of ARCHIVED ids are deleted
with `DELETE /api/delete_profiles_by_ids`, one request each, timed. Printed: one JSON line
per batch size (seconds per batch, median and all; milliseconds per row; the load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e_bench import load_average
from local_stack.bulk_seed import ProfileSeed
from local_stack.stack import LocalStack

REPEAT = 3
DAY = 86_400


def measure(rows: int, users: int, batches: list[int], repeat: int) -> list[dict[str, Any]]:
    """Seed a scratch server, then time `repeat` deletes of each batch size."""
    from reflexio_api import ReflexioClient, ReflexioSettings

    if sum(batches) * repeat > rows:
        raise SystemExit(f"--rows {rows} is fewer than the {sum(batches) * repeat} ids deleted")
    base = int(time.time()) - DAY
    specs = [ProfileSeed(s, rows, users, base_time=base) for s in ("current", "archived")]
    ids = iter(specs[1].ids())
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="prune-bench-") as scratch:
        limit = {"REFLEXIO_ROW_LIMIT_PROFILES": str(10 * rows)}
        with LocalStack(state_dir=Path(scratch) / "reflexio", extra_env=limit) as stack:
            stack.bulk_seed(specs)
            settings = ReflexioSettings(url=stack.url, read_timeout_s=600)
            with ReflexioClient(settings) as client:
                for size in batches:
                    load = load_average()
                    seconds = []
                    for _ in range(repeat):
                        batch = [next(ids) for _ in range(size)]
                        started = time.perf_counter()
                        deleted = client.delete_profiles(batch).deleted_count
                        seconds.append(time.perf_counter() - started)
                        assert deleted == size, (size, deleted)
                    median = statistics.median(seconds)
                    figures.append(
                        {
                            "rows_per_status": rows,
                            "batch": size,
                            "s_per_batch": round(median, 2),
                            "ms_per_row": round(1000 * median / size, 2),
                            "all_s": [round(s, 2) for s in seconds],
                            "load_before": load,
                            "load_after": load_average(),
                        }
                    )
                    print(json.dumps(figures[-1]), flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="CURRENT and ARCHIVED rows")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1_000, 5_000, 10_000])
    parser.add_argument("--repeat", type=int, default=REPEAT, help="deletes per batch size")
    args = parser.parse_args(argv)
    measure(args.rows, args.users, args.batches, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
