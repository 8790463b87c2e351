"""Old ARCHIVED rows deleted in batches ahead of the upgrade (hazard H17, issue 21).

The server's upgrade deletes every old ARCHIVED row (H1) in one `DELETE ... IN` of every
id, after search-index deletes in chunks of 500 that each scan the index: over SQLite's
parameter limit it cannot finish (a million rows), and long before that it runs past the
server's 60 s request limit. A regeneration that is about to upgrade (its gate passed, an
operator approved when asked) therefore deletes those rows itself first, by id, in batches
the server handles (PRUNE_BATCH ids a request, measured), and the upgrade itself deletes
only what was archived since.

It is the upgrade's own deletion done ahead of it, under the same rules:
- only rows the run's backup holds (fsynced before the run's first write), ARCHIVED there
  and still ARCHIVED in the reading the upgrade is planned from;
- journaled first: the touched-ids file names every one of them among the upgrade's
  deleted ids, and the run journal (step "upgrade", core/journal.py) names that file, both
  written before the first batch is sent;
- undone like the upgrade: a prune or an upgrade that fails, or a run that dies on the way,
  is established from the server by id (core/rollback.py) and the pruned rows are
  re-created from the backup with the rest; restore-profiles re-creates them from the same
  file (core/restore_plan.py: rows the run's upgrade deleted).

With at most `prune_archived_above` old ARCHIVED rows the upgrade deletes them itself, as
before.
"""

from __future__ import annotations

from core.state import IdSnapshot

PRUNE_ABOVE = 100_000
"""Old ARCHIVED rows the upgrade may delete itself; above, the run prunes them first. The
largest measured upgrade: 100,000 rows per status in 32 s in all (bench/RESULTS.md,
production size), faster than pruning them (1.1-1.5 ms a row); at 250,000 SQLite's
parameter limit stops it."""

PRUNE_BATCH = 1_000
"""Ids per delete request. The server's cost per row grows with the search index it scans
(bench/prune_bench.py, bench/RESULTS.md): 1.1 ms a row with 200,000 rows indexed (load
7-10), 6.2-7.0 ms with 600,000 (load 18), whatever the batch size; 5,000 ids took 28-36 s
there and 10,000 ids a 504 after the server's 60 s request limit. 1,000 ids took 6-11 s,
which leaves room for the index of a million rows per status."""


def prune_batches(backed_up: IdSnapshot, planned: IdSnapshot, above: int) -> list[list[str]]:
    """The old ARCHIVED ids to delete before the upgrade, PRUNE_BATCH a request (sorted):
    ARCHIVED in the backup and in the reading the upgrade is planned from; none when there
    are at most `above` of them."""
    ids = sorted(planned.archived.keys() & backed_up.archived.keys())
    if len(ids) <= above:
        return []
    return [ids[i : i + PRUNE_BATCH] for i in range(0, len(ids), PRUNE_BATCH)]
