"""Benchmark of the evaluation gate on synthetic profiles.

Usage: .venv/bin/python bench/gate_bench.py [--sizes 10000 100000] [--with-1m]
Each size is the number of candidate rows; the baseline has about as many. Each size runs
in a fresh process so peak memory (ru_maxrss) is measured per size.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

_VOCABULARY = (
    "user prefers likes works lives uses wants dislikes asked about often usually coffee tea "
    "python java rust dark mode light theme editor vim emacs berlin paris tokyo remote office "
    "morning evening meetings short answers detailed examples code reviews tests travel "
    "hiking running cooking vegetarian vegan allergic peanuts gluten budget premium plan "
    "weekly reports slack email phone manager engineer designer student teacher family kids "
    "dog cat music jazz rock podcasts books history science data pipelines dashboards sql "
    "spreadsheets deadlines friday monday quarterly release notes metric units spanish french"
)
_WORDS = _VOCABULARY.split()


def _sentence(rng: random.Random) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 30)))
    return text[:200].capitalize()


def _perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        words[rng.randrange(len(words))] = rng.choice(_WORDS)
    return " ".join(words)


def synthetic_rows(n_candidate: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Baseline and candidate profile rows as the REST API returns them (~10 rows per user)."""
    rng = random.Random(seed)
    base, cand = [], []
    user = 0
    while len(cand) < n_candidate:
        uid = f"user-{user}"
        base_texts = [_sentence(rng) for _ in range(rng.randint(1, 20))]
        cand_texts = []
        for text in base_texts:
            roll = rng.random()
            if roll < 0.5:
                cand_texts.append(text)
            elif roll < 0.8:
                cand_texts.append(_perturb(text, rng))
            elif roll < 0.9:
                cand_texts.append(_sentence(rng))
        cand_texts = cand_texts or [_sentence(rng)]
        for rows, texts, req in ((base, base_texts, "r-old"), (cand, cand_texts, "r-new")):
            rows.extend(
                {
                    "profile_id": f"{uid}-{req}-{i}",
                    "user_id": uid,
                    "content": t,
                    "source": "chat",
                    "generated_from_request_id": f"{req}-{user}",
                }
                for i, t in enumerate(texts)
            )
        user += 1
    return cand[:n_candidate], base


def run_one(n: int) -> dict:
    """Measure one size in this process."""
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
    start = time.perf_counter()
    report = evaluate(cand, base)
    gate_s = time.perf_counter() - start
    rows = len(cand) + len(base)
    return {
        "candidate_rows": len(cand),
        "baseline_rows": len(base),
        "users": cand["user_id"].nunique(),
        "parse_s": round(parse_s, 2),
        "gate_s": round(gate_s, 2),
        "gate_rows_per_s": round(rows / gate_s),
        "gate_vs_parse": round(gate_s / parse_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "verdict": report.verdict.value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--with-1m", action="store_true", help="also run 1,000,000 rows")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    sizes = [*args.sizes, *([1_000_000] if args.with_1m else [])]
    print("| candidate | baseline | users | parse s | gate s | rows/s | gate/parse | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['candidate_rows']} | {r['baseline_rows']} | {r['users']} | {r['parse_s']} | "
            f"{r['gate_s']} | {r['gate_rows_per_s']} | {r['gate_vs_parse']} | {r['peak_rss_mb']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
