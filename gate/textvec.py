"""Hashed TF-IDF of word and character n-grams, computed with numpy.

scikit-learn's analyzers tokenise each document in Python (about 12k documents/s for
character n-grams), too slow for millions of rows. Here every n-gram of a batch is hashed at
once from prefix sums over the batch's UTF-8 bytes: a polynomial hash modulo 2**64 whose
window can be read off any position, so no Python loop runs per document or per n-gram.
Features are hashed into `N_FEATURES` columns (words in the lower half, characters in the
upper half), weighted with scikit-learn's smoothed IDF and L2-normalised, so a sparse dot
product of two rows is their cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (4, 4)
FEATURE_BITS = 21
N_FEATURES = 1 << FEATURE_BITS

_P = 0x100000001B3  # odd, hence invertible modulo 2**64
_P_INV = pow(_P, -1, 1 << 64)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_HALF_SHIFT = np.uint64(64 - (FEATURE_BITS - 1))
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*range(ord("0"), ord("9") + 1), *range(ord("a"), ord("z") + 1), *range(128, 256)]] = (
    True
)
# Batches of at most this many texts keep the per-byte arrays in cache (twice as fast).
TERM_BATCH = 1000
_EMPTY_FEATURE = 0  # every empty document gets this one word-half feature, so "" matches ""


def _bucket(hashes: np.ndarray, salt: int, upper_half: bool) -> np.ndarray:
    """Map 64-bit hashes to feature columns in the word (lower) or char (upper) half."""
    with np.errstate(over="ignore"):
        mixed = (hashes + np.uint64(salt)) * _MIX
    cols = (mixed >> _HALF_SHIFT).astype(np.int64)
    return cols + (N_FEATURES // 2 if upper_half else 0)


def _encode(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower-case and join texts as ' t0 t1 ... ' in UTF-8; return bytes, starts, lengths."""
    encoded = [t.lower().encode("utf-8", "replace") for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    buf = np.frombuffer(b" " + b" ".join(encoded) + b" ", dtype=np.uint8)
    starts = np.empty(len(encoded), dtype=np.int64)
    if len(encoded):
        starts[0] = 1
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
        starts[1:] += 1
    return buf, starts, lengths


def term_counts(texts: Sequence[str]) -> sp.csr_matrix:
    """Raw n-gram counts of `texts` as a CSR matrix of shape (len(texts), N_FEATURES)."""
    if len(texts) <= TERM_BATCH:
        return _term_counts(texts)
    parts = [_term_counts(texts[i : i + TERM_BATCH]) for i in range(0, len(texts), TERM_BATCH)]
    offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
    indptr = np.concatenate(
        [parts[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(parts, offsets, strict=True)]
    )
    return sp.csr_matrix(
        (
            np.concatenate([p.data for p in parts]),
            np.concatenate([p.indices for p in parts]),
            indptr,
        ),
        shape=(len(texts), N_FEATURES),
    )


def _term_counts(texts: Sequence[str]) -> sp.csr_matrix:
    """term_counts of one batch."""
    buf, starts, lengths = _encode(texts)
    n_docs = len(lengths)
    size = buf.size
    with np.errstate(over="ignore"):
        powers = np.empty(size + 1, dtype=np.uint64)
        powers[0] = 1
        powers[1:] = _P
        np.cumprod(powers, out=powers)
        inv_powers = np.empty(size + 1, dtype=np.uint64)
        inv_powers[0] = 1
        inv_powers[1:] = _P_INV
        np.cumprod(inv_powers, out=inv_powers)
        prefix = np.zeros(size + 1, dtype=np.uint64)
        np.cumsum((buf.astype(np.uint64) + np.uint64(1)) * powers[:-1], out=prefix[1:])

        def window_hash(pos: np.ndarray, width: np.ndarray | int) -> np.ndarray:
            return (prefix[pos + width] - prefix[pos]) * inv_powers[pos]

        docs_out: list[np.ndarray] = []
        cols_out: list[np.ndarray] = []

        # Character n-grams over each document padded by one space on each side.
        doc_of_byte = np.full(size, -1, dtype=np.int64)
        padded_start = starts - 1
        padded_end = starts + lengths + 1
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            counts = np.maximum(padded_end - padded_start - n + 1, 0)
            doc = np.repeat(np.arange(n_docs), counts)
            first = np.repeat(padded_start - np.cumsum(counts) + counts, counts)
            pos = np.arange(doc.size, dtype=np.int64) + first
            docs_out.append(doc)
            cols_out.append(_bucket(window_hash(pos, n), n, upper_half=True))

        # Words: runs of [0-9a-z] or non-ASCII bytes, at least two bytes long.
        is_word = _WORD_BYTE[buf]
        edges = np.diff(is_word.astype(np.int8), prepend=0, append=0)
        w_start = np.flatnonzero(edges == 1)
        w_end = np.flatnonzero(edges == -1)
        keep = w_end - w_start >= 2
        w_start, w_end = w_start[keep], w_end[keep]
        doc_of_byte[starts.repeat(lengths > 0)] = np.flatnonzero(lengths > 0)
        doc_of_byte = np.maximum.accumulate(doc_of_byte)
        w_doc = doc_of_byte[w_start]
        w_hash = window_hash(w_start, w_end - w_start)
        if WORD_NGRAMS[0] <= 1:
            docs_out.append(w_doc)
            cols_out.append(_bucket(w_hash, 1, upper_half=False))
        if WORD_NGRAMS[1] >= 2:
            same = w_doc[1:] == w_doc[:-1]
            docs_out.append(w_doc[1:][same])
            pair = w_hash[:-1][same] * _MIX + w_hash[1:][same]
            cols_out.append(_bucket(pair, 2, upper_half=False))

    empty = np.flatnonzero(lengths == 0)
    docs_out.append(empty)
    cols_out.append(np.full(empty.size, _EMPTY_FEATURE, dtype=np.int64))
    rows = np.concatenate(docs_out)
    cols = np.concatenate(cols_out)
    data = np.ones(rows.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(n_docs, N_FEATURES))
    matrix.sum_duplicates()
    return matrix


class HashedTfidf:
    """TF-IDF over hashed n-grams; `fit` on batches, then `transform` any batch."""

    def __init__(self) -> None:
        self._df = np.zeros(N_FEATURES, dtype=np.float64)
        self._n_docs = 0
        self._idf: np.ndarray | None = None

    def partial_fit(self, texts: Sequence[str], weights: np.ndarray | None = None) -> None:
        """Add the document frequencies of a batch of texts, each counted `weights` times."""
        counts = term_counts(texts)
        if weights is None:
            weights = np.ones(counts.shape[0])
        per_entry = np.repeat(np.asarray(weights, dtype=np.float64), np.diff(counts.indptr))
        self._df += np.bincount(counts.indices, weights=per_entry, minlength=N_FEATURES)
        self._n_docs += int(np.sum(weights))
        self._idf = None

    def merge(self, other: HashedTfidf) -> None:
        """Add the document frequencies gathered by another (partially fitted) instance."""
        self._df += other._df
        self._n_docs += other._n_docs
        self._idf = None

    def frozen(self) -> HashedTfidf:
        """A copy holding only the IDF weights (small to send to a worker process)."""
        out = HashedTfidf.__new__(HashedTfidf)
        out._df = np.zeros(0)
        out._n_docs = self._n_docs
        out._idf = self._idf_weights()
        return out

    def _idf_weights(self) -> np.ndarray:
        if self._idf is None:
            self._idf = (np.log((1 + self._n_docs) / (1 + self._df)) + 1).astype(np.float32)
        return self._idf

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """L2-normalised TF-IDF rows (float32) of a batch of texts."""
        matrix = term_counts(texts)
        matrix.data *= self._idf_weights()[matrix.indices]
        row_nnz = np.diff(matrix.indptr)
        row_of_entry = np.repeat(np.arange(matrix.shape[0]), row_nnz)
        norms = np.sqrt(np.bincount(row_of_entry, weights=matrix.data**2, minlength=len(row_nnz)))
        matrix.data /= norms[row_of_entry].astype(np.float32)
        return matrix
