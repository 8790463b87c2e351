"""Optional worker processes for large evaluations (hygiene and similarity over user shards).

Inputs of at least PARALLEL_MIN_ROWS rows (candidate + baseline) are split into independent
tasks (chunks of distinct candidate texts, ranges of whole users) run by `workers` processes;
results do not depend on the number of workers. Workers are started with the "spawn" method,
which is safe in processes that run threads (Prefect); set GATE_WORKERS=1 to stay in-process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

PARALLEL_MIN_ROWS = 200_000
MAX_WORKERS = 2
TASKS_PER_WORKER = 4  # smaller tasks balance the load when other jobs share the cores


def worker_count(rows: int) -> int:
    """Processes to use for `rows` rows: GATE_WORKERS if set, else up to MAX_WORKERS cores."""
    configured = os.environ.get("GATE_WORKERS")
    workers = int(configured) if configured else min(MAX_WORKERS, os.cpu_count() or 1)
    return max(1, workers) if rows >= PARALLEL_MIN_ROWS else 1


@dataclass(frozen=True)
class Workers:
    """A process pool and how many tasks to split each job into."""

    executor: Executor
    tasks: int


@contextmanager
def worker_pool(rows: int) -> Iterator[Workers | None]:
    """Workers for `rows` rows, or None when the work should stay in this process."""
    workers = worker_count(rows)
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
        yield Workers(executor, workers * TASKS_PER_WORKER)
