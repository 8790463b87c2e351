"""The IDF weights every shard shares: fitted on a sample of rows chosen independently of
the sharding, in parts that can run anywhere, then combined (document frequencies add up)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from gate.textvec import HashedTfidf

IDF_SAMPLE_ROWS = 200_000
FIT_BATCH_ROWS = 5_000  # small batches keep term_counts' arrays in cache
# SipHash keys of the sample, one per side, so equal row ids on both sides are drawn apart.
_SAMPLE_KEYS = ("reflexio-gate-ca", "reflexio-gate-ba")

IdfPart = tuple[np.ndarray, np.ndarray]  # distinct texts and how many sampled rows carry each


def idf_parts(candidate: pd.DataFrame, baseline: pd.DataFrame, parts: int) -> list[IdfPart]:
    """The sample's distinct texts with their row counts, cut into at most `parts` parts.

    All rows when there are at most IDF_SAMPLE_ROWS; else each row is drawn with probability
    IDF_SAMPLE_ROWS / rows by a keyed hash of its (user_id, row_id), so the sample does not
    depend on the row order or on the sharding.
    """
    total = len(candidate) + len(baseline)
    rate = min(1.0, IDF_SAMPLE_ROWS / total) if total else 1.0
    texts = np.concatenate(
        [_sample(f, key, rate) for f, key in zip((candidate, baseline), _SAMPLE_KEYS, strict=True)]
    )
    codes, distinct = pd.factorize(texts)
    weights = np.bincount(codes, minlength=len(distinct))
    chunks = np.array_split(np.arange(len(distinct)), max(1, parts))
    return [(np.asarray(distinct[c], dtype=object), weights[c]) for c in chunks if len(c)]


def _sample(frame: pd.DataFrame, key: str, rate: float) -> np.ndarray:
    content = frame["content"].to_numpy(dtype=object)
    if rate >= 1.0:
        return content
    hashes = pd.util.hash_pandas_object(frame[["user_id", "row_id"]], index=False, hash_key=key)
    return content[hashes.to_numpy() < np.uint64(int(rate * 2.0**64))]


def fit_part(part: IdfPart) -> HashedTfidf:
    """Document frequencies of one part: each text counted as many times as rows carry it."""
    texts, weights = part
    vectorizer = HashedTfidf()
    for start in range(0, len(texts), FIT_BATCH_ROWS):
        stop = start + FIT_BATCH_ROWS
        vectorizer.partial_fit(texts[start:stop].tolist(), weights[start:stop])
    return vectorizer


def combine(parts: Iterable[HashedTfidf]) -> HashedTfidf:
    """The IDF weights of all parts together (exact: frequencies are whole numbers)."""
    vectorizer = HashedTfidf()
    for part in parts:
        vectorizer.merge(part)
    return vectorizer.frozen()
