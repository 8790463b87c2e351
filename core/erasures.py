"""Who clear-user-data erased, and when: one append-only JSON Lines file per server.

`erasures-<server slug>.jsonl` in the records store (`records_dir`: a local directory or a
remote folder, core/backup_store.py) holds one line per erased user:
`{"format": "reflexio-pipelines-erasure/1", "server": "host:port", "user_id": ...,
"erased_at": "<ISO time, UTC>"}`. The clear-user-data flow appends its lines (fsynced)
before it asks the server to erase anyone: a crash between erasing and recording must never
leave an erased user restorable. The restore reads the file strictly: a line it cannot
read stops it before any write, since guessing could bring an erased user back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from core.backup_store import BackupStore, as_store
from core.identity import key_slug

FORMAT = "reflexio-pipelines-erasure/1"


class ErasureRecordError(ValueError):
    """The erasure records cannot be read or written; the message says what to do."""


def erasure_name(server: str) -> str:
    """The records file of a server (its `host:port` key): `erasures-<slug>.jsonl`."""
    return f"erasures-{key_slug(server)}.jsonl"


def record_erasures(
    records: BackupStore | Path | str, server: str, user_ids: Iterable[str], erased_at: datetime
) -> str:
    """Append one line per user to the server's records file, durably (locally: fsynced,
    the directory too when the file is new); returns the file's location."""
    if erased_at.tzinfo is None:
        raise ValueError("erased_at must carry a time zone")
    text = "".join(
        json.dumps(
            {
                "format": FORMAT,
                "server": server,
                "user_id": user,
                "erased_at": erased_at.isoformat(),
            },
            sort_keys=True,
        )
        + "\n"
        for user in user_ids
    )
    store, name = as_store(records), erasure_name(server)
    try:
        store.append_bytes(name, text.encode("utf-8"))
    except OSError as exc:
        raise ErasureRecordError(
            f"Cannot record the erasure in {store.location(name)} ({exc.strerror or exc}); "
            "nobody was erased. Make the records location writable (records_dir), then run "
            "again."
        ) from None
    return store.location(name)


def read_erasures(records: BackupStore | Path | str, server: str) -> dict[str, datetime]:
    """The latest erase time of every user recorded for a server (its key); empty when
    the file does not exist (nobody was erased there). ErasureRecordError on a bad line."""
    store, name = as_store(records), erasure_name(server)
    path = store.location(name)
    try:
        text = store.read_bytes(name).decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ErasureRecordError(
            f"Cannot read the erasure records {path} ({exc}). Make the "
            "file readable (or point records_dir at the right location), then run again."
        ) from None
    latest: dict[str, datetime] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        user, when = _parse(path, number, line, server)
        if user not in latest or when > latest[user]:
            latest[user] = when
    return latest


def _parse(path: str, number: int, line: str, server: str) -> tuple[str, datetime]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise _unreadable(path, number, line)
    user, when = record.get("user_id"), _aware_time(record.get("erased_at"))
    if not isinstance(user, str) or not user or when is None:
        raise _unreadable(path, number, line)
    if record.get("server") != server:
        raise ErasureRecordError(
            f"{path}, line {number}, records an erasure on {record.get('server')!r}, not on "
            f"{server}: the file belongs to another server. Point records_dir at this "
            "server's records, then run again."
        )
    return user, when


def _aware_time(value: object) -> datetime | None:
    """An ISO time with its zone, else None."""
    try:
        when = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else None


def _unreadable(path: str, number: int, line: str) -> ErasureRecordError:
    return ErasureRecordError(
        f"{path}, line {number}, is not an erasure record ({line[:80]!r}); a restore "
        "that cannot read whom clear-user-data erased could bring them back. Fix or remove "
        "that line (a cut-off last line comes from a crash while recording, before that "
        "erase started), then run again."
    )


def erased_since(erasures: Mapping[str, datetime], since: datetime) -> frozenset[str]:
    """The users erased after `since` (read as UTC when it has no zone). A user erased
    before it, and learned again since, is not among them."""
    since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return frozenset(user for user, when in erasures.items() if when > since)
