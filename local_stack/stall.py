"""Set and clear the server's stall row directly in its SQLite DB (hazard H7).

Reflexio 0.2.32 never sets the stall flag for OpenAI-style providers and nothing on the
server clears it, so tests and demos write the singleton ``stall_state`` row themselves.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

StallReason = Literal["auth_error", "billing_error"]


def set_stall(db_path: Path, reason: StallReason, message: str = "stand-in stall") -> None:
    """Mark learning as stalled, not yet notified."""
    now = datetime.now(UTC).isoformat()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE stall_state SET stalled=1, reason=?, stalled_at=?, reset_estimate=NULL, "
            "notified_in_cc=0, last_attempt_at=?, error_message=? WHERE id=1",
            (reason, now, now, message),
        )
    conn.close()


def clear_stall(db_path: Path) -> None:
    """Back to the clean default row."""
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE stall_state SET stalled=0, reason=NULL, stalled_at=NULL, "
            "reset_estimate=NULL, notified_in_cc=0, error_message=NULL WHERE id=1"
        )
    conn.close()
