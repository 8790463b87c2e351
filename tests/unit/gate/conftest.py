"""Small hand-made frames for the gate tests."""

from __future__ import annotations

import pandas as pd


def frame(*rows: tuple[str, str], request_id: str = "r1") -> pd.DataFrame:
    """A gate frame from (user_id, content) pairs, all from one request."""
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "row_id": [f"row-{i}" for i in range(len(rows))],
            "content": [c for _, c in rows],
            "source": "chat",
            "request_id": request_id,
        }
    )
