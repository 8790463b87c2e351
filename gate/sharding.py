"""User-hash shards: every user's rows, candidate and baseline, land in the same shard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SHARD_HASH_KEY = "reflexio-gate-sh"  # 16 characters: the SipHash key of pandas' hash_array
SHARD_COLUMNS = ["user_id", "content", "request_id"]


@dataclass(frozen=True)
class Shard:
    """The rows of one shard's users. Both frames have the columns user_id, content,
    request_id and pos (the row's position in its normalised input frame), in input order."""

    candidate: pd.DataFrame
    baseline: pd.DataFrame


def shard_of(user_ids: pd.Series | np.ndarray, shards: int) -> np.ndarray:
    """The shard (0 to shards-1) of each user id: a keyed SipHash of the id's UTF-8 bytes,
    the same in every process and on every machine (unlike Python's salted `hash`)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    hashes = pd.util.hash_array(np.asarray(user_ids, dtype=object), hash_key=SHARD_HASH_KEY)
    return (hashes % np.uint64(shards)).astype(np.int64)


def split(candidate: pd.DataFrame, baseline: pd.DataFrame, shards: int) -> list[Shard]:
    """Split normalised candidate and baseline frames into `shards` shards (some may be empty)."""
    parts = zip(_split(candidate, shards), _split(baseline, shards), strict=True)
    return [Shard(candidate=c, baseline=b) for c, b in parts]


def _split(frame: pd.DataFrame, shards: int) -> list[pd.DataFrame]:
    lean = frame[SHARD_COLUMNS].assign(pos=np.arange(len(frame), dtype=np.int64))
    which = shard_of(frame["user_id"], shards)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(shards + 1))
    return [
        lean.iloc[order[a:b]].reset_index(drop=True)
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]
