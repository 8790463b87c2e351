"""Benchmark of golden-set scoring (gate/golden.py) on synthetic golden sets.

Usage: PYTHONPATH=. .venv/bin/python bench/golden_bench.py [--sizes 1000 10000] [--repeat 3]
Each size is the number of expected items: 5 per user (4 facts, 1 rule) over the gate
benchmark's Zipf vocabulary (bench/gate_bench.py). The "candidate" generated for each item
keeps it verbatim (50 %), rewords it (30 %) or drops it (20 %), and adds one new row per
user. "load s" reads the same golden set from a YAML file (core/golden_set.py), "score s"
is `score` (vectorise once, one sparse product per block of users), "report s" the
Markdown report; each the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.gate_bench import TOPIC_WORDS, VOCABULARY_SIZE, _Text
from core.golden_set import load_golden_set
from gate import GatePolicy
from gate.golden import Generated, score

ITEMS_PER_USER = 5
ACTIONS = {"keep": 0.5, "reword": 0.3, "drop": 0.2}


def golden_file(n_items: int, seed: int = 0) -> tuple[dict, list[Generated]]:
    """A golden set of n_items expected items and what a candidate generated for it."""
    rng = np.random.default_rng(seed)
    text = _Text(rng)
    n_users = n_items // ITEMS_PER_USER
    topics = np.minimum(text.sample(n_users * TOPIC_WORDS).reshape(n_users, -1) + 50,
                        VOCABULARY_SIZE - 1)  # fmt: skip
    owners = np.repeat(np.arange(n_users), ITEMS_PER_USER)
    items = text.sentences(owners, topics)
    action = rng.choice(list(ACTIONS), len(items), p=list(ACTIONS.values()))
    extra = text.sentences(np.arange(n_users), topics)
    conversations, generated = [], []
    for u in range(n_users):
        mine = items[u * ITEMS_PER_USER : (u + 1) * ITEMS_PER_USER]
        user = f"golden-{u:05d}"
        conversations.append(
            {
                "user_id": user,
                "source": "chat",
                "agent_version": "v1",
                "messages": [{"role": "user", "content": t} for t in mine],
                "profiles": mine[:-1],
                "playbooks": mine[-1:],
            }
        )
        for k, t in enumerate(mine):
            kind = "playbooks" if k == ITEMS_PER_USER - 1 else "profiles"
            a = action[u * ITEMS_PER_USER + k]
            if a != "drop":
                out = text.reword(t) if a == "reword" else t
                generated.append(Generated(user, kind, out, f"{user}-{k}"))
        generated.append(Generated(user, "profiles", extra[u], f"{user}-new"))
    return {"version": 1, "threshold": 0.5, "conversations": conversations}, generated


def _best(repeat: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def run(n_items: int, repeat: int) -> dict:
    data, generated = golden_file(n_items)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "golden.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        load_s, golden = _best(repeat, lambda: load_golden_set(path))
    expected = golden.expected()
    score_s, result = _best(repeat, lambda: score(expected, generated))
    report_s, _ = _best(repeat, lambda: result.markdown(GatePolicy()))
    return {
        "expected": len(expected),
        "generated": len(generated),
        "users": len(golden.user_ids),
        "load s": round(load_s, 3),
        "score s": round(score_s, 3),
        "report s": round(report_s, 3),
        "recall": round(result.recall, 3),
        "precision": round(result.precision, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for n in args.sizes:
        print(json.dumps(run(n, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
