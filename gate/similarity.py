"""Per-user similarity between baseline and candidate rows, computed block by block.

Rows arrive sorted by user. Consecutive users are grouped into blocks of about
`block_rows` rows; in a block each distinct (user, text) is vectorised once, rows with the
same text and user are compared without any product, and one sparse Gram product of the
distinct texts gives every other same-user pair. To keep the product to same-user pairs,
every feature column of a row is shifted by an offset drawn from its user, modulo a column
space of at least N_FEATURES: within one user the shift is a bijection, so same-user
similarities are exact, while rows of different users rarely share a column and the few
chance products are masked out afterwards. Every value, and which row wins a tie, depends
only on the rows of the same user, never on the other users of the block or of the shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gate.textvec import N_FEATURES, HashedTfidf

EPS = 1e-6
_MAX_SHIFTED_COLUMNS = 1 << 24
_USER_STRIDE = 0x9E3779B1


def _shifted_columns(nnz: int) -> int:
    """Column space for a block: at least N_FEATURES, about 8 columns per stored entry."""
    return int(min(max(N_FEATURES, 1 << int(8 * nnz).bit_length()), _MAX_SHIFTED_COLUMNS))


@dataclass(frozen=True)
class Similarities:
    """Per-row results, aligned with the input rows."""

    best: np.ndarray  # best similarity to a row of the other side, same user (0 if none)
    match: np.ndarray  # index of that row, -1 if none
    duplicates: np.ndarray  # same-side, same-user rows at or above the duplicate threshold
    duplicate_pairs: np.ndarray  # (k, 3): i, j, similarity of the closest candidate pairs


def _blocks(users: np.ndarray, block_rows: int) -> list[tuple[int, int]]:
    """Cut [0, n) into ranges of about block_rows rows that never split a user."""
    n = len(users)
    if n == 0:
        return []
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    wanted = np.arange(block_rows, n, block_rows)
    cuts = starts[np.minimum(np.searchsorted(starts, wanted), len(starts) - 1)]
    edges = np.unique(np.r_[0, cuts, n])
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _best(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> tuple:
    """Best value and its column for each of n rows (0 and -1 where a row has none).

    `rows` must be ascending; of equal best values the first in array order wins.
    """
    best = np.zeros(n, dtype=np.float32)
    match = np.full(n, -1, dtype=np.int64)
    if len(rows) == 0:
        return best, match
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    top = np.maximum.reduceat(vals, starts)
    segment = np.cumsum(np.r_[False, rows[1:] != rows[:-1]])
    hits = np.flatnonzero(vals == top[segment])
    first = hits[np.r_[True, segment[hits][1:] != segment[hits][:-1]]]
    best[rows[starts]] = top
    match[rows[starts]] = cols[first]
    return best, match


def _gram(matrix: sp.csr_matrix, users: np.ndarray) -> tuple:
    """Row, column and value of the non-zero same-user entries of matrix @ matrix.T, i != j."""
    width = _shifted_columns(matrix.nnz)
    shift = (users.astype(np.int64) * _USER_STRIDE) % width
    columns = (matrix.indices + np.repeat(shift, np.diff(matrix.indptr))) % width
    # Renumber the used columns 0..k-1: a small column space keeps the transpose cache-friendly.
    used = np.zeros(width, dtype=bool)
    used[columns] = True
    rank = np.cumsum(used, dtype=np.int32) - 1
    columns = rank[columns]
    del used, rank
    shifted = sp.csr_matrix(
        (matrix.data, columns, matrix.indptr),
        shape=(matrix.shape[0], int(columns.max(initial=0)) + 1),
    )
    del columns
    product = (shifted @ shifted.T).tocoo()
    del shifted
    keep = (users[product.row] == users[product.col]) & (product.row != product.col)
    vals = np.minimum(product.data[keep], 1.0)
    return product.row[keep].astype(np.int64), product.col[keep].astype(np.int64), vals


def _first_row(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """For each of n ids, the lowest of `rows` (ascending) carrying it, -1 if none."""
    out = np.full(n, -1, dtype=np.int64)
    found, first = np.unique(ids, return_index=True)
    out[found] = rows[first]
    return out


def compare(
    texts: np.ndarray,
    users: np.ndarray,
    is_candidate: np.ndarray,
    vectorizer: HashedTfidf,
    duplicate_threshold: float,
    max_pairs: int = 10,
    block_rows: int = 2_000,
) -> Similarities:
    """Compare every row with the other side's rows of the same user, and with its own side.

    `texts`, `users` (integer codes, sorted ascending) and `is_candidate` are aligned arrays;
    `vectorizer` holds the IDF weights. Within a block, each distinct (user, text) is
    vectorised once; rows with the same text and user have similarity 1 (0 if the text has
    no n-gram at all), and one same-user Gram product of the distinct texts gives every other
    pair. Duplicate pairs come sorted by similarity (descending), then row indices.
    """
    n = len(texts)
    best = np.zeros(n, dtype=np.float32)
    match = np.full(n, -1, dtype=np.int64)
    duplicates = np.zeros(n, dtype=np.int64)
    pairs: list[np.ndarray] = [np.empty((0, 3))]
    threshold = duplicate_threshold - EPS
    for start, stop in _blocks(users, block_rows):
        local_users = users[start:stop] - users[start]
        text_codes, _ = pd.factorize(texts[start:stop])
        keys = local_users.astype(np.int64) * (int(text_codes.max()) + 1) + text_codes
        # Distinct (user, text) ids in order of first row: within a user, independent of
        # the block's other users (this fixes which row wins a tie in `_best`).
        ids, _ = pd.factorize(keys)
        d = int(ids.max()) + 1
        first = np.unique(ids, return_index=True)[1]
        matrix = vectorizer.transform(texts[start + first].tolist())
        self_sim = (np.diff(matrix.indptr) > 0).astype(np.float32)
        d_users = local_users[first]
        p, q, v = _gram(matrix, d_users)
        del matrix
        side = is_candidate[start:stop]
        rows = np.arange(stop - start)
        n_side = [np.bincount(ids[side == s], minlength=d) for s in (False, True)]
        first_side = [_first_row(ids[side == s], rows[side == s], d) for s in (False, True)]
        for s in (False, True):
            own, other = n_side[s], n_side[not s]
            # Best row of the other side: the same text, else the closest other text.
            keep = other[q] > 0
            b, m = _best(p[keep], q[keep], v[keep], d)
            exact = (other > 0) & (self_sim > 0)
            b = np.where(exact, self_sim, b)
            m = np.where(exact, np.arange(d), m)
            m_row = np.where(m >= 0, first_side[not s][np.maximum(m, 0)], -1)
            idx = rows[side == s]
            best[start + idx] = b[ids[idx]]
            found = m_row[ids[idx]] >= 0
            match[start + idx[found]] = start + m_row[ids[idx]][found]
            # Same-side near-duplicates: other rows of the same text, plus close texts.
            close = v >= threshold
            count = np.bincount(p[close], weights=own[q[close]], minlength=d).astype(np.int64)
            count += np.where(self_sim >= threshold, own - 1, 0)
            duplicates[start + idx] = count[ids[idx]]
        pairs.append(_candidate_pairs(ids, side, start, self_sim, p, q, v, threshold, max_pairs))
    all_pairs = np.concatenate(pairs)
    all_pairs = all_pairs[np.lexsort((all_pairs[:, 1], all_pairs[:, 0], -all_pairs[:, 2]))]
    return Similarities(best, match, duplicates, all_pairs[:max_pairs])


def _candidate_pairs(ids, side, start, self_sim, p, q, v, threshold, max_pairs) -> np.ndarray:
    """The max_pairs closest candidate row pairs (i < j) at or above threshold, as (i, j, sim)."""
    cand_rows = np.flatnonzero(side)
    cand_ids = ids[cand_rows]
    order = np.argsort(cand_ids, kind="stable")
    sorted_ids = cand_ids[order]
    lo = np.searchsorted(sorted_ids, np.arange(len(self_sim)))
    hi = np.searchsorted(sorted_ids, np.arange(len(self_sim)), side="right")
    n_cand = hi - lo
    close = (v >= threshold) & (p < q) & (n_cand[p] > 0) & (n_cand[q] > 0)
    same = np.flatnonzero((self_sim >= threshold) & (n_cand > 1))
    text_pairs = np.r_[np.c_[p[close], q[close], v[close]], np.c_[same, same, self_sim[same]]]
    text_pairs = text_pairs[np.argsort(-text_pairs[:, 2], kind="stable")]
    out: list[np.ndarray] = []
    found, last = 0, np.inf
    # Strongest text pairs first; each gives at least one row pair, ties are all kept.
    for a, b, sim in text_pairs.tolist():
        if found >= max_pairs and sim < last:
            break
        left = cand_rows[order[lo[int(a)] : hi[int(a)]]]
        right = cand_rows[order[lo[int(b)] : hi[int(b)]]]
        i, j = np.meshgrid(left, right, indexing="ij")
        i, j = i.ravel(), j.ravel()
        if a != b:
            i, j = np.minimum(i, j), np.maximum(i, j)
        keep = i < j
        out.append(np.c_[start + i[keep], start + j[keep], np.full(int(keep.sum()), sim)])
        found += int(keep.sum())
        last = sim
    return np.concatenate(out) if out else np.empty((0, 3))
