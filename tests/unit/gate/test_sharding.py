"""Sharded evaluation gives the unsharded report: locally (1 or several shards, in-process
or in worker processes) and on a 2-worker Dask cluster through prefect-dask."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gate import GatePolicy, GateReport, evaluate
from gate.evaluate import plan
from gate.sharding import shard_of, split

POLICY = GatePolicy(max_examples=4)


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    words = np.array(
        [
            "likes",
            "tea",
            "coffee",
            "berlin",
            "remote",
            "python",
            "jazz",
            "hiking",
            "dark",
            "mode",
            "weekly",
        ]
    )
    return [" ".join(rng.choice(words, int(rng.integers(4, 9)))) for _ in range(n)]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """40 users: kept, rewritten, case-changed (ties), dropped, duplicated and bad rows."""
    rng = np.random.default_rng(7)
    users = [f"user-{u}" for u in rng.integers(0, 40, 400)]
    base = pd.DataFrame(
        {"user_id": users, "row_id": [f"b{i}" for i in range(400)], "content": _texts(rng, 400)}
    ).assign(request_id="old")
    cand = base.sample(frac=0.8, random_state=1).reset_index(drop=True)
    cand.loc[::5, "content"] = cand.loc[::5, "content"].str.upper()
    cand.loc[1::7, "content"] = _texts(rng, len(cand.loc[1::7]))
    cand = pd.concat([cand, cand.iloc[:30].assign(content=lambda f: f.content + "!")])
    cand.loc[cand.index[:3], "content"] = "I'm sorry, I can't help with that."
    cand = cand.assign(row_id=[f"c{i}" for i in range(len(cand))], request_id="new")
    cand = cand[cand.user_id != "user-5"].reset_index(drop=True)  # a lost user
    cand.loc[0, "request_id"] = "older"  # user 0 has rows of two generations: stale
    return cand, base


@pytest.fixture(scope="module")
def unsharded(frames) -> GateReport:
    return evaluate(*frames, POLICY, shards=1, workers=1)


def assert_same(report: GateReport, expected: GateReport) -> None:
    assert report.verdict == expected.verdict
    assert [(c.name, c.value, c.severity, c.message) for c in report.checks] == [
        (c.name, c.value, c.severity, c.message) for c in expected.checks
    ]
    assert report.examples == expected.examples
    assert report.per_user == expected.per_user
    assert report == expected


def test_the_data_exercises_every_part_of_the_report(unsharded):
    assert {e.kind for e in unsharded.examples} == {"lost", "changed", "duplicated"}
    assert len(unsharded.examples) == 3 * POLICY.max_examples
    by_name = {c.name: c.value for c in unsharded.checks}
    assert by_name["hygiene_refusal_or_error"] > 0 and by_name["stale_generations"] == 1
    assert 0 < by_name["retention"] < 1 and by_name["coverage"] > 0


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_sharded_in_process_gives_the_unsharded_report(frames, unsharded, shards):
    assert_same(evaluate(*frames, POLICY, shards=shards, workers=1), unsharded)


def test_sharded_in_worker_processes_gives_the_unsharded_report(frames, unsharded):
    assert_same(evaluate(*frames, POLICY, shards=5, workers=2), unsharded)


def test_row_order_does_not_change_the_report_checks(frames, unsharded):
    cand, base = frames
    report = evaluate(cand.iloc[::-1], base.iloc[::-1], POLICY, shards=3, workers=1)
    assert report.checks == unsharded.checks and report.per_user == unsharded.per_user


def test_every_user_is_in_exactly_one_shard_with_all_its_rows(frames):
    cand, base = frames
    shards = split(cand, base, 4)
    for side, frame in (("candidate", cand), ("baseline", base)):
        parts = [getattr(s, side) for s in shards]
        assert sum(len(p) for p in parts) == len(frame)
        owners = [set(p.user_id) for p in parts]
        assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :])
        for number, part in enumerate(parts):
            assert (shard_of(part.user_id, 4) == number).all()


def test_shard_hash_is_stable_across_processes():
    ids = ["user-1", "ü-2", "(no user)"]
    code = f"from gate.sharding import shard_of; print(shard_of({ids!r}, 7).tolist())"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=".",
        ).stdout
        for seed in ("1", "2")
    }
    assert runs == {f"{shard_of(ids, 7).tolist()}\n"}


def test_on_a_dask_cluster_through_prefect_dask(frames, unsharded, prefect_api):
    pytest.importorskip("prefect_dask", reason="the dask extra is not installed")
    distributed = pytest.importorskip("distributed")
    from tasks.gate import evaluate_on_dask

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        report = evaluate_on_dask(plan(*frames, 3), POLICY, "profiles", cluster.scheduler_address)
    assert_same(report, unsharded)
