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
