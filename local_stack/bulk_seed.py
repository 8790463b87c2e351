"""Seed a stopped Reflexio server's SQLite file with production-size data, fast.

Publishing through the API costs LLM calls and meets rate limits, so this writes the rows
the server's own insert path (reflexio 0.2.32, ``sqlite_storage``) would write:

- ``profiles`` / ``user_playbooks``: every column the store fills, with
  ``governance_subject_ref`` computed as the server does for the local secret.
- ``profiles_fts`` / ``user_playbooks_fts``: kept in sync by the store's insert path.
- ``*_unicode_fts``: kept in sync by the server's insert triggers, which call a Python SQL
  function (registered here with the server's definition). Firing them per row costs an
  FTS5 flush each, so they are dropped for the transaction and the new rows are indexed
  with the statement the server's own backfill uses; the triggers are then recreated.
- ``lineage_event``: the ``create`` event the store appends for each new row.
- ``requests`` / ``interactions`` (``ConversationSeed``): what a rerun reads per user
  (``get_rerun_user_ids`` lists the users of ``requests``; the extractors read the last
  window of ``interactions`` joined to their request), with ``interactions_fts`` as the
  store fills it. ``ingestion_seq`` and ``learning_admission`` stay NULL, as on rows
  stored before the server's learning stream existed: no live extraction picks them up,
  and a rerun does not read them.

``embedding`` stays NULL and the sqlite-vec tables (``profiles_vec``,
``user_playbooks_vec``, ``interactions_vec``) stay empty: no listing, statistics, rerun,
upgrade, downgrade or delete reads them (deletes of missing vec rows are no-ops), and a NULL
embedding keeps the server's boot-time vec backfill from touching seeded rows. Only semantic
search and playbook aggregation, which need vectors, do not see seeded rows.

Never run this against a DB a server has open. Above 250,000 rows in a table, the server's
boot-time retention sweep (row cap ``REFLEXIO_ROW_LIMIT_PROFILES``, default 250,000) sets
out to delete 20% of the profiles, ARCHIVED first, and holds the write lock for minutes
meanwhile ("database is locked" on every write): raise the cap for such servers.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import re
import sqlite3
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

SeedStatus = Literal["current", "pending", "archived"]
STATUSES: tuple[SeedStatus, ...] = ("current", "pending", "archived")

ORG_ID = "self-host-org"
"""The local server's organisation (its DB is ``reflexio_self-host-org.db``)."""
GOVERNANCE_REF_SECRET = b"reflexio-local-governance-ref-secret"
"""The server's secret when REFLEXIO_GOVERNANCE_REF_SECRET is unset outside production."""
FAR_FUTURE = 4_102_444_800
"""2100-01-01: the schema's default expiration; statistics count only unexpired rows."""
BATCH_ROWS = 50_000
_ASCII_RUN = re.compile("[a-z0-9]+")
TOPICS = ("hiking", "jazz", "baking", "chess", "cycling", "gardening", "sailing", "poetry")
JOBS = ("nurse", "teacher", "engineer", "baker", "pilot", "lawyer", "chemist", "farmer")


def _check_common(count: int, users: int, same_second: int, sources: tuple[str, ...]) -> None:
    """Raise ValueError for counts and sources no seed can have."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users}")
    if not 0 <= same_second <= count:
        raise ValueError(f"same_second must be between 0 and count ({count}), got {same_second}")
    if not sources or not all(sources):
        raise ValueError(f"sources must be non-empty strings, got {sources!r}")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")


@dataclass(frozen=True)
class ProfileSeed:
    """``count`` profiles in one status, dealt round-robin over ``users`` users.

    The first ``same_second`` rows share ``last_modified_timestamp == base_time``; each later
    row is one second older than the one before. ``base_time=None`` means "when seeded".
    """

    status: SeedStatus
    count: int
    users: int
    id_prefix: str = "bulk"
    sources: tuple[str, ...] = ("chat",)
    same_second: int = 0
    base_time: int | None = None

    def __post_init__(self) -> None:
        _check_status(self.status)
        _check_common(self.count, self.users, self.same_second, self.sources)
        if not self.id_prefix:
            raise ValueError("id_prefix must not be empty")

    def profile_id(self, n: int) -> str:
        """The id of row ``n``."""
        return f"{self.id_prefix}-{self.status}-{n:07d}"

    def user_id(self, n: int) -> str:
        """The user of row ``n`` (the same users for every status of one prefix)."""
        return user_id(self.id_prefix, n % self.users)

    def ids(self) -> Iterator[str]:
        """Every profile id this seed writes, in row order."""
        return (self.profile_id(n) for n in range(self.count))


@dataclass(frozen=True)
class UserPlaybookSeed:
    """``count`` user playbooks of one agent_version and status, over ``users`` users.

    ``same_second`` and ``base_time`` apply to ``created_at`` (what the listing orders by).
    """

    agent_version: str
    status: SeedStatus
    count: int
    users: int
    id_prefix: str = "bulk"
    sources: tuple[str, ...] = ("chat",)
    same_second: int = 0
    base_time: int | None = None

    def __post_init__(self) -> None:
        _check_status(self.status)
        _check_common(self.count, self.users, self.same_second, self.sources)
        if not self.agent_version or not self.id_prefix:
            raise ValueError("agent_version and id_prefix must not be empty")

    def user_id(self, n: int) -> str:
        """The user of row ``n``."""
        return user_id(self.id_prefix, n % self.users)

    def request_id(self, n: int) -> str:
        """The request id of row ``n`` (identifies it, as the integer id is assigned late)."""
        return f"{self.id_prefix}-{self.agent_version}-{self.status}-{n:07d}"


@dataclass(frozen=True)
class ConversationSeed:
    """One stored conversation for each of the first ``users`` users of ``of``: a request
    (``source``, ``agent_version``) whose user turns are that user's rows of ``of`` in row
    order, so a rerun learns the facts those rows hold again. Stamped ``base_time`` (None:
    when seeded). The stand-in LLM learns at most 5 facts a conversation: give ``of`` at
    most 5 rows a user for the rerun to re-learn every one."""

    of: ProfileSeed
    users: int
    source: str = "chat"
    agent_version: str = "v1"
    base_time: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.users <= min(self.of.users, self.of.count):
            limit = min(self.of.users, self.of.count)
            raise ValueError(
                f"users must be between 1 and {limit} (users of `of`), got {self.users}"
            )
        if not self.source or not self.agent_version:
            raise ValueError("source and agent_version must not be empty")

    @property
    def id_prefix(self) -> str:
        """The prefix of the users it talks for (``of``'s)."""
        return self.of.id_prefix

    @property
    def status(self) -> str:
        """``of``'s status (one conversation seed per profile seed)."""
        return self.of.status

    def user_ids(self) -> list[str]:
        """The users that get a conversation."""
        return [user_id(self.of.id_prefix, u) for u in range(self.users)]

    def request_id(self, user: int) -> str:
        """The request id of user number ``user``'s conversation."""
        return f"{self.of.id_prefix}-{self.of.status}-conversation-{user:06d}"

    def lines(self, user: int) -> list[str]:
        """User number ``user``'s turns: the content of its rows of ``of``."""
        rows = range(user, self.of.count, self.of.users)
        return [_content(self.of.user_id(n), n, self.of.status) for n in rows]


Seed = ProfileSeed | UserPlaybookSeed | ConversationSeed


@dataclass(frozen=True)
class SeededProfiles:
    """What one ProfileSeed wrote; ``spec.base_time`` is the resolved time."""

    spec: ProfileSeed

    def ids(self) -> Iterator[str]:
        """Regenerate the ids (memory-light at any size)."""
        return self.spec.ids()


@dataclass(frozen=True)
class SeededUserPlaybooks:
    """What one UserPlaybookSeed wrote: ids ``first_id .. first_id + count - 1``, in row order."""

    spec: UserPlaybookSeed
    first_id: int

    def ids(self) -> range:
        """The user_playbook_ids written."""
        return range(self.first_id, self.first_id + self.spec.count)


@dataclass(frozen=True)
class SeedResult:
    """Everything written, as specs and id ranges (no per-row lists), and how fast."""

    profiles: tuple[SeededProfiles, ...]
    user_playbooks: tuple[SeededUserPlaybooks, ...]
    seconds: float
    conversations: tuple[ConversationSeed, ...] = ()

    @property
    def rows(self) -> int:
        """Profile plus user playbook rows written."""
        seeded = (*self.profiles, *self.user_playbooks)
        return sum(part.spec.count for part in seeded)

    @property
    def rows_per_second(self) -> float:
        """Write throughput, all tables included."""
        return self.rows / self.seconds if self.seconds else 0.0

    def talking_users(self) -> set[str]:
        """Every user given a seeded conversation (the users a rerun regenerates)."""
        return {user for part in self.conversations for user in part.user_ids()}

    def profile_ids(self, status: SeedStatus) -> set[str]:
        """Every seeded profile id in one status."""
        return {pid for part in self.profiles if part.spec.status == status for pid in part.ids()}

    def user_playbook_ids(self, agent_version: str, status: SeedStatus) -> set[int]:
        """Every seeded user_playbook_id of one agent_version and status."""
        return {
            upid
            for part in self.user_playbooks
            if part.spec.agent_version == agent_version and part.spec.status == status
            for upid in part.ids()
        }


def user_id(prefix: str, number: int) -> str:
    """A seeded user's id."""
    return f"{prefix}-user-{number:06d}"


def row_timestamp(base_time: int, same_second: int, n: int) -> int:
    """Row ``n``'s time: ``base_time`` for the first ``same_second`` rows, then 1 s older each."""
    return base_time - max(0, n - max(same_second - 1, 0))


@functools.lru_cache(maxsize=1 << 20)
def _subject_ref(user: str) -> str:
    """``governance_subject_ref`` as the local server computes it for a user."""
    raw = f"{ORG_ID}:subject:{user}".encode()
    return "subref_v1_" + hmac.new(GOVERNANCE_REF_SECRET, raw, hashlib.sha256).hexdigest()[:32]


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _runs(text: str) -> list[str]:
    """Alphanumeric runs, split at ASCII/non-ASCII boundaries (the server's rule)."""
    runs: list[str] = []
    current: list[str] = []
    for char in _normalize(text):
        if not char.isalnum() or (current and char.isascii() != current[-1].isascii()):
            if current:
                runs.append("".join(current))
            current = [char] if char.isalnum() else []
        else:
            current.append(char)
    if current:
        runs.append("".join(current))
    return runs


def unicode_lexical_index(document: str | None) -> str:
    """The server's ``reflexio_unicode_lexical_index`` SQL function, which its triggers call."""
    if not document:
        return ""
    if document.isascii():  # fast path, same result: ASCII runs are [a-z0-9]+ after casefold
        return " ".join(dict.fromkeys(_ASCII_RUN.findall(document.lower())))
    terms: list[str] = []
    for run in _runs(document):
        if run.isascii():
            terms.append(run)
        else:
            terms.extend(run)
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return " ".join(dict.fromkeys(terms))


def _content(user: str, n: int, status: str) -> str:
    topic, job = TOPICS[n % len(TOPICS)], JOBS[(n // len(TOPICS)) % len(JOBS)]
    return f"{user} works as a {job}, enjoys {topic} and mentioned fact {n} ({status})."


def _profile_row(spec: ProfileSeed, base_time: int, n: int) -> tuple[object, ...]:
    """Row ``n`` of the profiles table, in ``_PROFILE_SQL`` order."""
    ts = row_timestamp(base_time, spec.same_second, n)
    user = spec.user_id(n)
    return (
        spec.profile_id(n),
        user,
        _content(user, n, spec.status),
        ts,
        f"{spec.id_prefix}-{spec.status}-req-{n % spec.users:06d}",
        spec.sources[n % len(spec.sources)],
        None if spec.status == "current" else spec.status,
        _iso(ts),
        ts if spec.status == "archived" else None,
        _subject_ref(user),
    )


def _playbook_row(spec: UserPlaybookSeed, base_time: int, upid: int, n: int) -> tuple[object, ...]:
    """Row ``n`` of the user_playbooks table, in ``_PLAYBOOK_SQL`` order."""
    ts = row_timestamp(base_time, spec.same_second, n)
    user = spec.user_id(n)
    topic = TOPICS[n % len(TOPICS)]
    return (
        upid,
        user,
        _iso(ts),
        spec.request_id(n),
        spec.agent_version,
        f"When {user} asks about {topic}, answer with example {n} ({spec.agent_version}).",
        f"user {user} asks about {topic}",
        f"Seeded rule {n}: the user cares about {topic}.",
        None if spec.status == "current" else spec.status,
        spec.sources[n % len(spec.sources)],
        f"I like {topic}.",
        ts if spec.status == "archived" else None,
        _subject_ref(user),
        ts,
    )


_PROFILE_SQL = (
    "INSERT INTO profiles (profile_id, user_id, content, last_modified_timestamp, "
    "generated_from_request_id, profile_time_to_live, expiration_timestamp, source, status, "
    "created_at, retired_at, governance_subject_ref) "
    f"VALUES (?, ?, ?, ?, ?, 'infinity', {FAR_FUTURE}, ?, ?, ?, ?, ?)"
)
_PROFILE_FTS_SQL = "INSERT INTO profiles_fts (profile_id, content) VALUES (?, ?)"
_PLAYBOOK_SQL = (
    "INSERT INTO user_playbooks (user_playbook_id, user_id, playbook_name, created_at, "
    "request_id, agent_version, content, trigger, rationale, status, source, source_span, "
    "retired_at, governance_subject_ref) "
    "VALUES (?, ?, 'playbook', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PLAYBOOK_FTS_SQL = "INSERT INTO user_playbooks_fts (rowid, search_text) VALUES (?, ?)"
_LINEAGE_SQL = (
    "INSERT INTO lineage_event (org_id, entity_type, entity_id, op, prov_relation, actor, "
    f"request_id, created_at) VALUES ('{ORG_ID}', ?, ?, 'create', 'wasGeneratedBy', "
    "'extractor', ?, ?)"
)


def _chunks(count: int) -> Iterator[range]:
    return (range(i, min(i + BATCH_ROWS, count)) for i in range(0, count, BATCH_ROWS))


def _write_profiles(conn: sqlite3.Connection, spec: ProfileSeed, base_time: int) -> None:
    for chunk in _chunks(spec.count):
        rows = [_profile_row(spec, base_time, n) for n in chunk]
        conn.executemany(_PROFILE_SQL, rows)
        conn.executemany(_PROFILE_FTS_SQL, [(row[0], row[2]) for row in rows])
        conn.executemany(_LINEAGE_SQL, [("profile", row[0], row[4], row[3]) for row in rows])


def _write_playbooks(
    conn: sqlite3.Connection, spec: UserPlaybookSeed, base_time: int, first_id: int
) -> None:
    for chunk in _chunks(spec.count):
        rows = [_playbook_row(spec, base_time, first_id + n, n) for n in chunk]
        conn.executemany(_PLAYBOOK_SQL, [row[:-1] for row in rows])
        conn.executemany(_PLAYBOOK_FTS_SQL, [(row[0], f"{row[6]} {row[5]}") for row in rows])
        lineage = [("user_playbook", str(row[0]), row[3], row[-1]) for row in rows]
        conn.executemany(_LINEAGE_SQL, lineage)


_REQUEST_SQL = (
    "INSERT INTO requests (request_id, user_id, created_at, source, agent_version, session_id, "
    "evaluation_only, governance_subject_ref) VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
)
_INTERACTION_SQL = (
    "INSERT INTO interactions (user_id, content, request_id, created_at, role, token_count, "
    "tools_used, citations, retrieved_learnings, governance_subject_ref) "
    "VALUES (?, ?, ?, ?, 'user', ?, '[]', '[]', '[]', ?)"
)


def _write_conversations(conn: sqlite3.Connection, spec: ConversationSeed, base_time: int) -> None:
    """Each user's request and its user turns (interaction ids: AUTOINCREMENT's next)."""
    created = _iso(base_time)
    for chunk in _chunks(spec.users):
        requests, turns = [], []
        for number in chunk:
            user = user_id(spec.of.id_prefix, number)
            request = spec.request_id(number)
            ref = _subject_ref(user)
            session = f"{user}-{spec.source}-1"
            requests.append((request, user, created, spec.source, spec.agent_version, session, ref))
            turns += [
                (user, line, request, created, len(line.split()), ref)
                for line in spec.lines(number)
            ]
        conn.executemany(_REQUEST_SQL, requests)
        conn.executemany(_INTERACTION_SQL, turns)


_UNICODE_INDEXED = {
    "interactions": "COALESCE(content, '') || ' ' || COALESCE(user_action_description, '')",
    "profiles": "COALESCE(content, '') || ' ' || COALESCE(expanded_terms, '')",
    "user_playbooks": "COALESCE(trigger, '') || ' ' || COALESCE(content, '') || ' ' || "
    "COALESCE(rationale, '') || ' ' || COALESCE(source, '')",
}
"""The text each table's ``<table>_unicode_fts_ai`` trigger indexes."""


def _max_rowids(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        table: conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()[0]
        for table in _UNICODE_INDEXED
    }


def _drop_unicode_triggers(conn: sqlite3.Connection) -> list[str]:
    """Drop the per-row Unicode FTS triggers (an FTS5 flush per row: ~50 us); return their SQL."""
    names = [f"{table}_unicode_fts_ai" for table in _UNICODE_INDEXED]
    marks = ", ".join("?" for _ in names)
    saved = [
        sql
        for (sql,) in conn.execute(
            f"SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})",
            names,
        )
    ]
    for name in names:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return saved


def _index_unicode(conn: sqlite3.Connection, after: dict[str, int], triggers: list[str]) -> None:
    """Fill the Unicode FTS tables for the new rows as the server's backfill does, in one
    statement per table, then put the triggers back; and the new interactions' FTS rows,
    which the store writes after each insert."""
    conn.execute(
        "INSERT INTO interactions_fts (rowid, content, user_action_description) "
        "SELECT rowid, content, user_action_description FROM interactions WHERE rowid > ?",
        (after["interactions"],),
    )
    for table, text in _UNICODE_INDEXED.items():
        conn.execute(
            f"INSERT INTO {table}_unicode_fts(rowid, search_ngrams) "
            f"SELECT rowid, reflexio_unicode_lexical_index({text}) FROM {table} WHERE rowid > ?",
            (after[table],),
        )
    for sql in triggers:
        conn.execute(sql)


def _next_playbook_id(conn: sqlite3.Connection) -> int:
    """One past the highest id AUTOINCREMENT has ever handed out (ids are never reused)."""
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(user_playbook_id) FROM user_playbooks), 0), "
        "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'user_playbooks'), 0))"
    ).fetchone()
    return int(row[0]) + 1


def check_specs(specs: Sequence[Seed]) -> None:
    """Raise ValueError when two specs would write the same ids."""
    keys = Counter(
        (type(s).__name__, s.id_prefix, s.status, getattr(s, "agent_version", "")) for s in specs
    )
    duplicates = sorted(str(key) for key, times in keys.items() if times > 1)
    if duplicates:
        raise ValueError(f"specs would write the same ids twice: {', '.join(duplicates)}")


def _open(db_path: Path) -> sqlite3.Connection:
    """A connection tuned for one bulk transaction, with the server's trigger function."""
    if not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no server DB (start the server once to create it)")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.create_function(
        "reflexio_unicode_lexical_index", 1, unicode_lexical_index, deterministic=True
    )
    conn.execute("PRAGMA journal_mode=MEMORY")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def seed_rows(db_path: Path, specs: Sequence[Seed], now: int | None = None) -> SeedResult:
    """Write every spec into the (stopped) server's DB in one transaction.

    ``now`` (default: the clock) replaces each spec's ``base_time=None``.
    """
    check_specs(specs)
    resolved_now = int(time.time()) if now is None else now
    started = time.perf_counter()
    conn = _open(db_path)
    profiles: list[SeededProfiles] = []
    playbooks: list[SeededUserPlaybooks] = []
    conversations: list[ConversationSeed] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        next_id = _next_playbook_id(conn)
        after = _max_rowids(conn)
        triggers = _drop_unicode_triggers(conn)
        for given in specs:
            base_time = resolved_now if given.base_time is None else given.base_time
            spec = replace(given, base_time=base_time)
            if isinstance(spec, ProfileSeed):
                _write_profiles(conn, spec, base_time)
                profiles.append(SeededProfiles(spec))
            elif isinstance(spec, ConversationSeed):
                _write_conversations(conn, spec, base_time)
                conversations.append(spec)
            else:
                _write_playbooks(conn, spec, base_time, next_id)
                playbooks.append(SeededUserPlaybooks(spec, next_id))
                next_id += spec.count
        _index_unicode(conn, after, triggers)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    elapsed = time.perf_counter() - started
    return SeedResult(tuple(profiles), tuple(playbooks), elapsed, tuple(conversations))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.bulk_seed",
        description="Write profiles straight into a STOPPED Reflexio server's SQLite DB.",
        epilog="Above 250,000 profiles, start the server with REFLEXIO_ROW_LIMIT_PROFILES "
        "raised, or its retention sweep deletes 20% of them.",
    )
    parser.add_argument("--db", type=Path, required=True, help="reflexio_self-host-org.db")
    for status in STATUSES:
        parser.add_argument(f"--{status}", type=int, default=0, help=f"{status} profiles")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--same-second", type=int, default=0, help="per status")
    parser.add_argument("--sources", default="chat,email", help="comma-separated")
    parser.add_argument("--id-prefix", default="bulk")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: seed profiles per status and print the throughput."""
    args = _parse_args(argv)
    try:
        specs = [
            ProfileSeed(
                status=status,
                count=getattr(args, status),
                users=args.users,
                id_prefix=args.id_prefix,
                sources=tuple(args.sources.split(",")),
                same_second=args.same_second,
            )
            for status in STATUSES
            if getattr(args, status)
        ]
        result = seed_rows(args.db, specs)
    except (ValueError, FileNotFoundError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size_mb = args.db.stat().st_size / 1e6
    print(
        f"seeded {result.rows:,} rows in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s); {args.db} is {size_mb:,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
