"""Local runners of the gate's parts: in this process, or in worker processes.

A runner maps a picklable function over a list and returns the results in order. Inputs
of at least PARALLEL_MIN_ROWS rows use up to MAX_WORKERS processes (GATE_WORKERS overrides;
1 stays in-process). Workers start with the "spawn" method, safe in processes that run
threads (Prefect).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Runner = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]

PARALLEL_MIN_ROWS = 200_000
MAX_WORKERS = 2
SHARDS_PER_WORKER = 4  # smaller shards balance the load when other jobs share the cores


def worker_count(rows: int) -> int:
    """Processes to use for `rows` rows: GATE_WORKERS if set, else up to MAX_WORKERS cores."""
    if rows < PARALLEL_MIN_ROWS:
        return 1
    configured = os.environ.get("GATE_WORKERS")
    workers = int(configured) if configured else min(MAX_WORKERS, os.cpu_count() or 1)
    return max(1, workers)


def in_process(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Run `fn` on each item here, one after the other."""
    return [fn(item) for item in items]


@contextmanager
def local_runner(workers: int) -> Iterator[Runner]:
    """A runner with `workers` processes (in this process when workers <= 1)."""
    if workers <= 1:
        yield in_process
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
        yield lambda fn, items: list(executor.map(fn, items))
