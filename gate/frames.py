"""Build and validate the row frames the gate compares (candidate = PENDING, baseline = CURRENT)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["profiles", "playbooks"]

COLUMNS = ["user_id", "row_id", "content", "trigger", "source", "request_id"]
REQUIRED_COLUMNS = ["user_id", "row_id", "content", "request_id"]
NO_USER = "(no user)"

# REST field -> frame column, per kind; the first listed field that is present wins.
_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "profiles": {
        "row_id": ("profile_id",),
        "user_id": ("user_id",),
        "content": ("content",),
        "source": ("source",),
        "request_id": ("generated_from_request_id",),
    },
    "playbooks": {
        "row_id": ("user_playbook_id", "id"),
        "user_id": ("user_id",),
        "content": ("content",),
        "trigger": ("trigger",),
        "source": ("source",),
        "request_id": ("request_id",),
    },
}


SHARED_FIELDS = frozenset({"user_id", "source", "generated_from_request_id", "request_id"})
"""Fields whose values repeat across rows (a user's rows, a request's rows, a handful of
sources): one string object per distinct value is kept (interned), not one per row. At a
million rows that is most of a frame's memory besides content and ids."""


def _shared(value: Any) -> Any:
    """The one kept copy of a repeating string value; anything else as it is."""
    return sys.intern(value) if type(value) is str else value


class FrameBuilder:
    """Builds a gate frame from pages of rows as the Reflexio REST API returns them.

    Only the fields the gate reads are kept, as one list of values per field; the row dicts
    are not, and repeating values are kept once (SHARED_FIELDS). A field absent from a row
    is NaN there, as in a DataFrame built from all rows. `frame()` is called once: it hands
    the lists over to the frame column by column.
    """

    def __init__(self, kind: Kind) -> None:
        if kind not in _FIELDS:
            raise ValueError(f"kind must be 'profiles' or 'playbooks', got {kind!r}")
        self.kind = kind
        self._fields = [f for fields in _FIELDS[kind].values() for f in fields]
        self._values: dict[str, list[Any]] = {}
        self._rows = 0
        self._built = False

    def _not_built(self) -> None:
        if self._built:
            raise RuntimeError("this FrameBuilder has made its frame: a builder makes one")

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add a page of rows."""
        self._not_built()
        page = list(rows)
        for field in self._fields:
            values = self._values.get(field)
            if values is None:
                if not any(field in row for row in page):
                    continue
                values = self._values[field] = [np.nan] * self._rows
            if field in SHARED_FIELDS:
                values.extend([_shared(row.get(field, np.nan)) for row in page])
            else:
                values.extend([row.get(field, np.nan) for row in page])
        self._rows += len(page)

    def frame(self) -> pd.DataFrame:
        """The normalised gate frame of every row added (see `frame_from_rows`); the
        builder is emptied as the columns are made, so the rows are not held twice.

        Raises ValueError naming the fields that no row carries.
        """
        self._not_built()
        self._built = True
        index = pd.RangeIndex(self._rows)
        frame = pd.DataFrame(index=index)
        missing = []
        for column, fields in _FIELDS[self.kind].items():
            present = [f for f in fields if f in self._values]
            if present:
                values = self._values.pop(present[0])
                frame[column] = pd.Series(values, index=index, dtype=object)
                values.clear()
            elif column == "trigger" or self._rows == 0:
                frame[column] = None
            else:
                missing.append(" or ".join(fields))
        self._values.clear()
        if missing:
            raise ValueError(f"{self.kind} rows are missing field(s): {', '.join(missing)}")
        if "trigger" not in frame.columns:
            frame["trigger"] = None
        return normalize_frame(frame[COLUMNS], "rows")


def frame_from_rows(rows: Iterable[Mapping[str, Any]], kind: Kind) -> pd.DataFrame:
    """Build a gate frame from rows as the Reflexio REST API returns them.

    Profiles need profile_id, user_id, content, source, generated_from_request_id; user
    playbooks need user_playbook_id (or id), user_id, content, source, request_id, and may
    carry trigger. Raises ValueError naming the missing fields.
    """
    builder = FrameBuilder(kind)
    builder.add(rows)
    return builder.frame()


def require_frame(frame: object, name: str) -> pd.DataFrame:
    """`frame` itself if it is a DataFrame; else a TypeError naming it."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    return frame


def normalize_frame(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Check the required columns and return a copy with string user_id, row_id and content.

    A null user_id becomes "(no user)" and a null content "" (reported by the hygiene checks).
    Raises ValueError naming the missing columns and the frame.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in require_frame(frame, name).columns]
    if missing:
        raise ValueError(
            f"{name} frame is missing column(s): {', '.join(missing)} "
            f"(expected {', '.join(COLUMNS)}; trigger and source are optional)"
        )
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(object).where(frame["user_id"].notna(), NO_USER),
            "row_id": frame["row_id"].astype(object),
            "content": frame["content"].astype(object).where(frame["content"].notna(), ""),
            "trigger": frame["trigger"] if "trigger" in frame.columns else None,
            "source": frame["source"] if "source" in frame.columns else None,
            "request_id": frame["request_id"],
        }
    )
    for column in ("user_id", "row_id", "content"):
        out[column] = out[column].astype(str)
    return out.reset_index(drop=True)
