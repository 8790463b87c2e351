"""A restore of a large upgrade on the real server: time, peak memory, requests.

    python -m bench.restore_bench --touched 100000 --untouched 100000

A scratch server (rate limits off, retention cap raised) is seeded through
`local_stack.bulk_seed` as a regeneration's rerun leaves it: the touched users' CURRENT,
PENDING and ARCHIVED rows (a third of `touched` each) and `untouched` CURRENT rows of
users the rerun did not touch. Their rows are backed up (`core.backup.BackupWriter`, every
status, as the regeneration's read does), the touched-ids file written beside it
(`core.touched.write_touched_ids`), then the server's own upgrade runs (affected users
only): the PENDING rows promoted, the touched users' CURRENT rows archived and every old
ARCHIVED row deleted (H1), checked by id. An empty erasure record says nobody was erased.

Then the server is restarted (so its peak memory is the restore's) and
`flows.restore.restore_profiles` runs in a child process (its own peak RSS) on a
`prefect_test_harness()` API: it re-creates the deleted rows and writes the archived ones
back as CURRENT and the promoted ones back as PENDING, as they were backed up (all through
add_user_profile, which embeds every row it writes: every touched id is one write).
Afterwards every row on the server is compared by id (status, user, content, timestamp)
with the backup; any difference ends the bench with exit code 1. `--dry-run` plans only
(the restore's listing and planning at full size, no writes): the server must then hold the
upgraded rows unchanged, by id. Printed: one JSON line
with the seconds, the peak RSS of the restore process and of the server process (VmHWM),
the requests per route and their seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.e2e_bench import load_average, process_cpu_s
from local_stack.bulk_seed import ProfileSeed
from local_stack.stack import LocalStack

RUN_ID = "00000000-restore-bench"
ROWS_PER_USER = 10
LISTED = ("current", "pending", "archived")

CHILD = """
import json, sys
from bench.restore_bench import restore_in_child
print(json.dumps(restore_in_child(*sys.argv[1:])))
"""

Rows = dict[str, tuple[Any, ...]]


def restore_in_child(url: str, manifest: str, records: str, dry_run: str) -> dict[str, Any]:
    """Run the restore flow here; its wall time, outcome, peak RSS and every request it
    sent to the server (counted and timed per route by wrapping httpx.Client.send)."""
    import httpx

    from flows.restore import restore_profiles

    sent: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    send = httpx.Client.send

    def counted(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            return send(self, request, **kwargs)
        finally:
            if str(request.url).startswith(url):
                route = f"{request.method} {request.url.path}"
                sent[route] += 1
                seconds[route] += time.perf_counter() - started

    httpx.Client.send = counted  # type: ignore[method-assign]
    rss_before = _peak_rss_mb(os.getpid())
    params = dict(
        backup_file=manifest, reflexio_url=url, records_dir=records, dry_run=dry_run == "dry"
    )
    started = time.perf_counter()
    state = restore_profiles(**params, return_state=True)
    wall = time.perf_counter() - started
    return {
        "restore_s": round(wall, 1),
        "outcome": state.type.value,
        "message": state.message,
        "peak_rss_mb": _peak_rss_mb(os.getpid()),
        "peak_rss_before_restore_mb": rss_before,
        "requests": sum(sent.values()),
        "requests_by_route": dict(sent),
        "request_s_by_route": {route: round(s, 1) for route, s in seconds.items()},
    }


def _listed(url: str) -> list[dict[str, Any]]:
    """Every profile on the server, stamped as the regeneration's read stamps them."""
    from reflexio_api import ReflexioClient, ReflexioSettings
    from tasks.ops import _stamped

    with ReflexioClient(ReflexioSettings(url=url, read_timeout_s=300)) as client:
        return [
            row
            for status in LISTED
            for row in _stamped(client.list_profiles(status), status)  # type: ignore[arg-type]
        ]


def _by_id(rows: list[dict[str, Any]]) -> Rows:
    """id -> what a restore must bring back: status, user, content, timestamp."""
    return {
        r["profile_id"]: (r["status"], r["user_id"], r["content"], r["last_modified_timestamp"])
        for r in rows
    }


def _differences(want: Rows, got: Rows) -> list[str]:
    """Every way `got` differs from `want`, by id (a few ids named per kind)."""
    missing = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    changed = sorted(i for i in want.keys() & got.keys() if want[i] != got[i])
    return [
        f"{len(ids)} {what}: {', '.join(ids[:5])}"
        for what, ids in (("missing", missing), ("not expected", extra), ("changed", changed))
        if ids
    ]


def _seeds(touched: int, untouched: int) -> dict[str, ProfileSeed]:
    """The rerun's state: the touched users' rows (a third per status) and the others'."""
    third = touched // 3
    users = max(1, third // ROWS_PER_USER)
    seeds = {
        status: ProfileSeed(status, count, users, id_prefix="run")
        for status, count in (
            ("pending", third),
            ("current", third),
            ("archived", touched - 2 * third),
        )
    }
    if untouched:
        others = max(1, untouched // ROWS_PER_USER)
        seeds["untouched"] = ProfileSeed("current", untouched, others, id_prefix="kept")
    return seeds


def _backup_and_upgrade(
    url: str, seeds: dict[str, ProfileSeed], backups: Path
) -> tuple[str, Rows, Rows]:
    """Back up every row, write the touched ids, upgrade; return the manifest, the rows a
    restore must bring back (every backed-up row) and the rows after the upgrade. Raises
    when the upgrade did not leave the expected state, by id."""
    from core.backup import BackupWriter
    from core.state import ExpectedState
    from core.touched import write_touched_ids
    from reflexio_api import ReflexioClient, ReflexioSettings

    rows = _listed(url)
    with BackupWriter(backups, "profiles", url, RUN_ID) as writer:
        for start in range(0, len(rows), 1000):
            writer.write(rows[start : start + 1000])
    ids = {name: frozenset(seed.ids()) for name, seed in seeds.items()}
    kept = ids.get("untouched", frozenset())
    expected = ExpectedState(
        promoted=ids["pending"],
        current=ids["pending"] | kept,
        archived=ids["current"],
        deleted=ids["archived"],
    )
    write_touched_ids(writer.info.manifest_path, expected)
    with ReflexioClient(ReflexioSettings(url=url, read_timeout_s=600)) as client:
        client.upgrade_profiles(only_affected_users=True)
    upgraded = _by_id(_listed(url))
    statuses = {pid: status for pid, (status, *_) in upgraded.items()}
    want = dict.fromkeys(expected.current) | dict.fromkeys(expected.archived, "archived")
    if statuses != want:
        raise SystemExit(f"setup: the upgrade did not leave the expected state ({len(statuses)})")
    return writer.info.manifest_path, _by_id(rows), upgraded


def _peak_rss_mb(pid: int) -> int:
    """A process's peak RSS since its exec (VmHWM; ru_maxrss would carry over the peak of the
    process that forked it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return -1


def _run_child(url: str, manifest: str, records: Path, dry_run: bool) -> dict[str, Any]:
    """The restore in its own interpreter, on this process's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, manifest, str(records), "dry" if dry_run else "write"],
        capture_output=True,
        text=True,
        env=env,
        timeout=6 * 3600,
    )
    if out.returncode != 0:
        raise SystemExit(f"the restore process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(touched: int, untouched: int, dry_run: bool) -> dict[str, Any]:
    """Seed, back up, upgrade, restore, check by id; the figures. A dry run must leave the
    upgraded rows as they were, by id."""
    from core.erasures import erasure_name
    from core.identity import server_key

    figures: dict[str, Any] = {"touched": touched, "untouched": untouched, "dry_run": dry_run}
    figures["load_before"] = load_average()
    with tempfile.TemporaryDirectory(prefix="restore-bench-") as scratch:
        limit = {"REFLEXIO_ROW_LIMIT_PROFILES": str(10 * (touched + untouched))}
        with LocalStack(state_dir=Path(scratch) / "reflexio", extra_env=limit) as stack:
            seeds = _seeds(touched, untouched)
            started = time.perf_counter()
            stack.bulk_seed(list(seeds.values()))
            backups = Path(scratch) / "backups"
            manifest, backed_up, upgraded = _backup_and_upgrade(stack.url, seeds, backups)
            want = upgraded if dry_run else backed_up
            figures["setup_s"] = round(time.perf_counter() - started, 1)
            records = Path(scratch) / "records"
            records.mkdir()
            (records / erasure_name(server_key(stack.url))).write_text("")
            stack.server.stop()  # a fresh server process: its peak is the restore's
            stack.server.start()
            pid = stack.server._process.pid  # type: ignore[union-attr]
            cpu_before = process_cpu_s(pid)
            figures.update(_run_child(stack.url, manifest, records, dry_run))
            figures["server_cpu_s"] = round(process_cpu_s(pid) - cpu_before, 1)
            figures["server_peak_rss_mb"] = _peak_rss_mb(pid)
            problems = _differences(want, _by_id(_listed(stack.url)))
    figures["load_after"] = load_average()
    if figures["outcome"] != "COMPLETED":
        problems.insert(0, f"the flow ended {figures['outcome']}: {figures['message']}")
    figures["verified_by_id"] = 0 if problems else len(want)
    figures["problems"] = problems
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--touched", type=int, default=100_000, help="ids the upgrade touched")
    parser.add_argument("--untouched", type=int, default=100_000, help="other CURRENT rows")
    parser.add_argument(
        "--dry-run", action="store_true", help="plan only: the restore must write nothing"
    )
    args = parser.parse_args(argv)
    if args.touched < 3 or args.untouched < 0:
        parser.error("--touched must be at least 3 (a third per status), --untouched >= 0")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        figures = measure(args.touched, args.untouched, args.dry_run)
    print(json.dumps(figures), flush=True)
    if figures["problems"]:
        print(f"RESTORE NOT VERIFIED: {'; '.join(figures['problems'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
