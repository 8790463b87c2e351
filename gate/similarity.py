"""Per-user similarity between baseline and candidate rows, computed block by block.

Rows arrive sorted by user. Consecutive users are grouped into blocks of about
`block_rows` rows; each block is vectorised once and compared with sparse products. To keep
the products to same-user pairs, every feature column of a row is shifted by an offset drawn
from its user, modulo a column space of at least N_FEATURES: within one user the shift is a
bijection, so same-user similarities are exact, while rows of different users rarely share a
column and the few chance products are masked out afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gate.textvec import N_FEATURES, HashedTfidf

EPS = 1e-6
IDF_SAMPLE_ROWS = 200_000
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


def _fit_idf(texts: np.ndarray, batch_rows: int) -> HashedTfidf:
    """Fit IDF on all rows, or on a fixed-seed uniform sample of IDF_SAMPLE_ROWS rows."""
    vectorizer = HashedTfidf()
    if len(texts) > IDF_SAMPLE_ROWS:
        pick = np.random.default_rng(0).choice(len(texts), IDF_SAMPLE_ROWS, replace=False)
        texts = texts[np.sort(pick)]
    for start in range(0, len(texts), batch_rows):
        vectorizer.partial_fit(texts[start : start + batch_rows].tolist())
    return vectorizer


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
    """Best value and its column for each of n rows (0 and -1 where a row has none)."""
    best = np.zeros(n, dtype=np.float32)
    match = np.full(n, -1, dtype=np.int64)
    order = np.argsort(-vals, kind="stable")
    unique_rows, first = np.unique(rows[order], return_index=True)
    best[unique_rows] = vals[order][first]
    match[unique_rows] = cols[order][first]
    return best, match


def _same_user_products(left: sp.csr_matrix, right: sp.csr_matrix, lu, ru) -> tuple:
    """Row, column and value of the non-zero same-user entries of left @ right.T."""
    product = (left @ right.T).tocoo()
    keep = lu[product.row] == ru[product.col]
    vals = np.minimum(product.data[keep], 1.0)
    return product.row[keep].astype(np.int64), product.col[keep].astype(np.int64), vals


def compare(
    texts: np.ndarray,
    users: np.ndarray,
    is_candidate: np.ndarray,
    duplicate_threshold: float,
    max_pairs: int = 10,
    block_rows: int = 20_000,
) -> Similarities:
    """Compare every row with the other side's rows of the same user, and with its own side.

    `texts`, `users` (integer codes, sorted ascending) and `is_candidate` are aligned arrays.
    """
    n = len(texts)
    best = np.zeros(n, dtype=np.float32)
    match = np.full(n, -1, dtype=np.int64)
    duplicates = np.zeros(n, dtype=np.int64)
    pairs: list[np.ndarray] = [np.empty((0, 3))]
    if n == 0:
        return Similarities(best, match, duplicates, pairs[0])
    vectorizer = _fit_idf(texts, block_rows)
    for start, stop in _blocks(users, block_rows):
        matrix = vectorizer.transform(texts[start:stop].tolist())
        local_users = users[start:stop] - users[start]
        width = _shifted_columns(matrix.nnz)
        shift = (local_users.astype(np.int64) * _USER_STRIDE) % width
        row_nnz = np.diff(matrix.indptr)
        columns = (matrix.indices + np.repeat(shift, row_nnz)) % width
        shifted = sp.csr_matrix((matrix.data, columns, matrix.indptr), shape=(stop - start, width))
        side = is_candidate[start:stop]
        base_idx, cand_idx = np.flatnonzero(~side), np.flatnonzero(side)
        base, cand = shifted[base_idx], shifted[cand_idx]
        bu, cu = local_users[base_idx], local_users[cand_idx]

        rows, cols, vals = _same_user_products(base, cand, bu, cu)
        for idx, other, r, c in (
            (base_idx, cand_idx, rows, cols),
            (cand_idx, base_idx, cols, rows),
        ):
            b, m = _best(r, c, vals, len(idx))
            best[start + idx] = b
            found = m >= 0
            match[start + idx[found]] = start + other[m[found]]

        for idx, block, block_users in ((base_idx, base, bu), (cand_idx, cand, cu)):
            r, c, v = _same_user_products(block, block, block_users, block_users)
            dup = (r < c) & (v >= duplicate_threshold - EPS)
            r, c, v = r[dup], c[dup], v[dup]
            duplicates[start + idx] += np.bincount(r, minlength=len(idx))
            duplicates[start + idx] += np.bincount(c, minlength=len(idx))
            if block is cand and len(v):
                top = np.argsort(-v, kind="stable")[:max_pairs]
                pairs.append(np.c_[start + idx[r[top]], start + idx[c[top]], v[top]])
    all_pairs = np.concatenate(pairs)
    all_pairs = all_pairs[np.argsort(-all_pairs[:, 2], kind="stable")[:max_pairs]]
    return Similarities(best, match, duplicates, all_pairs)
