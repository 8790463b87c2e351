"""The gate task: local by default, on Dask with an address, a clear error without the extra."""

from __future__ import annotations

import sys

import pytest

from gate import GatePolicy, evaluate
from tasks.gate import DASK_ADDRESS_ENV, DaskExtraMissing, run_gate
from tests.unit.gate.conftest import frame

BASE = frame(("u1", "Prefers dark mode in the code editor"), ("u2", "Vegetarian for years"))
CAND = frame(("u1", "Prefers dark mode in the code editor"), request_id="r2")


@pytest.fixture
def no_prefect_dask(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # import raises ImportError


def test_address_without_the_extra_names_the_extra(no_prefect_dask):
    with pytest.raises(DaskExtraMissing, match=r"pip install 'reflexio-pipelines\[dask\]'"):
        run_gate.fn(CAND, BASE, GatePolicy(), "profiles", "t", dask_address="tcp://h:8786")


def test_address_from_the_environment(no_prefect_dask, monkeypatch):
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://h:8786")
    with pytest.raises(DaskExtraMissing, match="tcp://h:8786"):
        run_gate.fn(CAND, BASE, GatePolicy(), "profiles", "t")


def test_without_an_address_evaluates_locally_and_publishes(prefect_api, monkeypatch):
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    report = run_gate.fn(CAND, BASE, GatePolicy(), "profiles", "unit-test")
    assert report == evaluate(CAND, BASE, GatePolicy())
    assert report.verdict.value == "fail"


def test_on_dask_gives_the_local_report_and_sends_only_keys_to_the_api(prefect_api, monkeypatch):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    users = [f"u{i}" for i in range(12)]
    base = frame(*((u, f"{u} likes tea and long walks in the hills") for u in users))
    cand = frame(*((u, f"{u} likes coffee and long walks in the hills") for u in users[2:]))
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with cluster:
        report = run_gate.fn(
            cand, base, GatePolicy(), "profiles", "unit-test", cluster.scheduler_address
        )
    assert report == evaluate(cand, base, GatePolicy())
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["evaluation-gate-shards"]))
        )
    assert runs
    for run in runs:
        assert set(run.parameters) == {"idf_part_keys", "shard_keys", "policy"}
        assert all(isinstance(k, str) for k in run.parameters["shard_keys"])
