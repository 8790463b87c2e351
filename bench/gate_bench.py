"""Benchmark of the evaluation gate on synthetic profiles.

Usage: .venv/bin/python bench/gate_bench.py [--sizes 10000 100000] [--with-1m] [--dask]
Each size is the number of candidate rows; the baseline has about as many. Each size runs
in a fresh process so peak memory (ru_maxrss) is measured per size. With --dask each size
also runs on a 2-worker Dask LocalCluster (one thread per worker process) through
prefect-dask, in a throwaway Prefect API; "gate s" then includes the Prefect task runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

import numpy as np

_SYLLABLES = [c + v for c in [*"bcdfghklmnprstvwz", "th", "ch", "sh", "st"] for v in "aeiou"]
_ENDINGS = ["", "", "", "n", "r", "s", "t", "l", "m"]
VOCABULARY_SIZE = 20_000
ZIPF_EXPONENT = 1.1
TOPIC_WORDS = 12  # per-user words (name, city, employer, ...) that recur in that user's rows
TOPIC_SHARE = 0.2  # share of a row's words drawn from its user's topic words
# What the candidate does with each baseline row: keep verbatim, reword, rewrite, drop.
ACTIONS = {"keep": 0.55, "reword": 0.25, "rewrite": 0.05, "drop": 0.15}
NEW_ROWS_PER_USER = 1.0  # Poisson mean of extra candidate rows per user
NEAR_DUPLICATE_SHARE = 0.01  # candidate rows repeated with a small edit
BAD_ROW_SHARE = 0.001  # candidate rows replaced by a refusal (exercises hygiene)


class _Text:
    """Zipf-distributed sentences over a fixed-seed vocabulary of pseudo-words."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        words: set[str] = set()
        while len(words) < VOCABULARY_SIZE:
            parts = rng.choice(_SYLLABLES, int(rng.integers(1, 5)))
            words.add("".join(parts) + str(rng.choice(_ENDINGS)))
        # Frequent words tend to be short, as in real text: rank by length plus noise.
        ordered = sorted(sorted(words), key=lambda w: len(w) + 2.0 * rng.standard_normal())
        self.words = np.array(ordered, dtype=object)
        ranks = np.arange(1, VOCABULARY_SIZE + 1, dtype=np.float64)
        self.cdf = np.cumsum(ranks**-ZIPF_EXPONENT)
        self.cdf /= self.cdf[-1]

    def sample(self, n: int) -> np.ndarray:
        """n word indices from the Zipf distribution."""
        return np.searchsorted(self.cdf, self.rng.random(n))

    def sentences(self, users: np.ndarray, topics: np.ndarray) -> list[str]:
        """One sentence of 40-200 characters per entry of `users` (row -> user index)."""
        rng = self.rng
        n_words = rng.integers(7, 33, len(users))
        idx = self.sample(int(n_words.sum()))
        owner = np.repeat(users, n_words)
        topical = rng.random(idx.size) < TOPIC_SHARE
        idx[topical] = topics[owner[topical], rng.integers(0, TOPIC_WORDS, int(topical.sum()))]
        words = self.words[idx]
        out = []
        start = 0
        for k in n_words.tolist():
            text = " ".join(words[start : start + k])
            start += k
            while len(text) < 40:
                text += " " + self.words[self.sample(1)[0]]
            if len(text) > 199:
                text = text[:199].rsplit(" ", 1)[0]
            out.append(text.capitalize() + ".")
        return out

    def reword(self, text: str) -> str:
        """Replace, drop or insert 1-3 words."""
        rng = self.rng
        words = text[:-1].split()
        for _ in range(int(rng.integers(1, 4))):
            op, i = rng.random(), int(rng.integers(0, len(words)))
            new = self.words[self.sample(1)[0]]
            if op < 0.6:
                words[i] = new
            elif op < 0.8 and len(words) > 6:
                del words[i]
            else:
                words.insert(i, new)
        return " ".join(words).capitalize() + "."


def synthetic_rows(n_candidate: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Baseline and candidate profile rows as the REST API returns them (~10 rows per user).

    Users have 1-20 baseline rows of 40-200 characters over a Zipf-distributed vocabulary of
    20 000 pseudo-words, partly from per-user topic words. Each baseline row is kept verbatim,
    reworded, rewritten or dropped in the candidate (ACTIONS), users gain new rows, a few
    candidate rows are near-duplicates or refusals. Rows come in a shuffled order, as from a
    paginated listing sorted by time.
    """
    rng = np.random.default_rng(seed)
    text = _Text(rng)
    n_users = n_candidate // 9 + 10
    topics = text.sample(n_users * TOPIC_WORDS).reshape(n_users, TOPIC_WORDS) + 50
    topics = np.minimum(topics, VOCABULARY_SIZE - 1)
    base_users = np.repeat(np.arange(n_users), rng.integers(1, 21, n_users))
    base_texts = text.sentences(base_users, topics)
    action = rng.choice(list(ACTIONS), len(base_users), p=list(ACTIONS.values()))
    new_users = np.repeat(np.arange(n_users), rng.poisson(NEW_ROWS_PER_USER, n_users))
    rewrite = np.flatnonzero(action == "rewrite")
    fresh = text.sentences(np.r_[base_users[rewrite], new_users], topics)
    cand_texts = [
        text.reword(t) if a == "reword" else t
        for t, a in zip(base_texts, action.tolist(), strict=True)
    ]
    for i, t in zip(rewrite.tolist(), fresh, strict=False):
        cand_texts[i] = t
    kept = action != "drop"
    cand_users = np.r_[base_users[kept], new_users]
    cand_texts = [t for t, k in zip(cand_texts, kept.tolist(), strict=True) if k]
    cand_texts += fresh[len(rewrite) :]
    dup = np.flatnonzero(rng.random(len(cand_texts)) < NEAR_DUPLICATE_SHARE)
    cand_users = np.r_[cand_users, cand_users[dup]]
    cand_texts += [cand_texts[i].rstrip(".") + "!" for i in dup.tolist()]
    for i in np.flatnonzero(rng.random(len(cand_texts)) < BAD_ROW_SHARE).tolist():
        cand_texts[i] = "I'm sorry, I can't help with that request."
    # Keep whole users until n_candidate candidate rows are reached.
    cand_pick = np.argsort(cand_users, kind="stable")[:n_candidate]
    base_pick = np.flatnonzero(base_users <= cand_users[cand_pick[-1]])
    rows = []
    for side, users, texts, pick in (
        ("old", base_users, base_texts, base_pick),
        ("new", cand_users, cand_texts, cand_pick),
    ):
        pick = pick[rng.permutation(len(pick))]
        rows.append(
            [
                {
                    "profile_id": f"user-{u}-{side}-{i}",
                    "user_id": f"user-{u}",
                    "content": texts[i],
                    "source": "chat",
                    "generated_from_request_id": f"r-{side}-{u}",
                }
                for i, u in zip(pick.tolist(), users[pick].tolist(), strict=True)
            ]
        )
    base, cand = rows
    return cand, base


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def _descendants(root: int) -> set[int]:
    """Every process below `root` (children, grandchildren, ...), from /proc (Linux)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


class _TreeRss:
    """Peaks of the RSS of this process and of the summed RSS of its descendants (the gate's
    workers, the Dask nannies and workers) but `exclude`, sampled every 0.2 s from /proc
    (Linux); ru_maxrss covers only this process, over its whole life."""

    def __init__(self, exclude: frozenset[int] = frozenset()) -> None:
        self.exclude = exclude
        self.peak = 0
        self.own_peak = 0
        self.others_peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.2):
            own = _rss_kb(os.getpid())
            others = sum(map(_rss_kb, _descendants(os.getpid()) - self.exclude))
            self.own_peak = max(self.own_peak, own)
            self.others_peak = max(self.others_peak, others)
            self.peak = max(self.peak, own + others)

    def stop(self) -> int:
        """Stop sampling; the peak in KiB (at least this process's ru_maxrss so far)."""
        self._done.set()
        self._thread.join()
        return max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _on_dask(cand, base, sampler: _TreeRss) -> tuple:
    """Evaluate on a fresh 2-worker LocalCluster through prefect-dask; the report and the
    gate's seconds. The Prefect API's processes are left out of the memory figures."""
    import dask
    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from gate import GatePolicy
    from gate.evaluate import plan
    from tasks.gate import DASK_SHARDS, evaluate_on_dask

    # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
    # dynamic mmap threshold: every large allocation is mapped and unmapped again, and the
    # gate's per-shard work takes twice the CPU. None unsets it (see tasks/gate.py).
    unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with prefect_test_harness(server_startup_timeout=120), dask.config.set(unset_trim):
        sampler.exclude = frozenset(_descendants(os.getpid()))
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
            start = time.perf_counter()
            gate_plan = plan(cand, base, DASK_SHARDS)
            report = evaluate_on_dask(
                gate_plan, GatePolicy(), "profiles", cluster.scheduler_address
            )
            return report, time.perf_counter() - start


def run_one(n: int, dask: bool = False) -> dict:
    """Measure one size in this process (on a Dask LocalCluster if `dask`)."""
    from gate import evaluate, frame_from_rows

    cand_rows, base_rows = synthetic_rows(n)
    payload = json.dumps({"candidate": cand_rows, "baseline": base_rows})
    del cand_rows, base_rows
    start = time.perf_counter()
    data = json.loads(payload)
    cand = frame_from_rows(data["candidate"], "profiles")
    base = frame_from_rows(data["baseline"], "profiles")
    parse_s = time.perf_counter() - start
    del payload, data
    cpu_start = _cpu_s()
    if dask:
        sampler = _TreeRss(frozenset(_descendants(os.getpid())))
        report, gate_s = _on_dask(cand, base, sampler)
    else:
        sampler = _TreeRss()
        start = time.perf_counter()
        report = evaluate(cand, base)
        gate_s = time.perf_counter() - start
    gate_cpu_s = _cpu_s() - cpu_start
    rows = len(cand) + len(base)
    return {
        "runner": "dask" if dask else "local",
        "candidate_rows": len(cand),
        "baseline_rows": len(base),
        "users": cand["user_id"].nunique(),
        "parse_s": round(parse_s, 2),
        "gate_s": round(gate_s, 2),
        "gate_rows_per_s": round(rows / gate_s),
        "gate_vs_parse": round(gate_s / parse_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tree_peak_rss_mb": round(sampler.stop() / 1024),
        "gate_own_rss_mb": round(sampler.own_peak / 1024),
        "gate_workers_rss_mb": round(sampler.others_peak / 1024),
        "gate_cpu_s": round(gate_cpu_s, 1),
        "verdict": report.verdict.value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--with-1m", action="store_true", help="also run 1,000,000 rows")
    parser.add_argument(
        "--dask", action="store_true", help="also run each size on a 2-worker Dask LocalCluster"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.dask)))
        return
    sizes = [*args.sizes, *([1_000_000] if args.with_1m else [])]
    print(
        "| runner | candidate | baseline | users | parse s | gate s | rows/s | gate/parse "
        "| peak RSS MB | peak RSS all processes MB | during gate: this process MB "
        "| during gate: workers MB | gate CPU s | load before |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, dask in ((n, dask) for n in sizes for dask in (False, True)[: 1 + args.dask]):
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        command = [sys.executable, __file__, "--one", str(n), *(["--dask"] if dask else [])]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['runner']} | {r['candidate_rows']} | {r['baseline_rows']} | {r['users']} | "
            f"{r['parse_s']} | "
            f"{r['gate_s']} | {r['gate_rows_per_s']} | {r['gate_vs_parse']} | {r['peak_rss_mb']} | "
            f"{r['tree_peak_rss_mb']} | {r['gate_own_rss_mb']} | {r['gate_workers_rss_mb']} | "
            f"{r['gate_cpu_s']} | {load} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
