"""A fake Reflexio that changes while it is listed, answering as reflexio-ai 0.2.32 does.

`get_all_profiles`: `WHERE status ... AND last_modified_timestamp BETWEEN start AND end
ORDER BY last_modified_timestamp DESC LIMIT ?` (ties in no promised order), CURRENT stored
as status NULL, tombstones (superseded, expired) never listed. `get_profile_statistics`:
rows per status whose `expiration_timestamp >= now`. Every write stamps the server's second,
as the server's storage does; extraction's inserts may carry a second from before their
write (`lag`, the dedup LLM call). The clock moves `tick` seconds per request; answers carry
a `Date` header.

Before each request `during(fake, request)` may change the data: the tests make users talk
(inserts), dedup supersede, the expiry sweep retire, rows move status and be deleted.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx

T0 = 1_700_000_000
"""In the past: `server_second` takes the earlier of the server's clock and this machine's."""
FAR = 4_102_444_800
Row = dict[str, Any]
LISTED = {"current": None, "pending": "pending", "archived": "archived"}


class LiveFake:
    """Profiles in memory; every request advances the clock by `tick` seconds."""

    def __init__(self, seed: int = 0) -> None:
        self.now = T0
        self.tick = 1
        """Seconds the clock moves per request."""
        self.rows: dict[str, Row] = {}
        self.written: dict[str, int] = {}
        """id -> the request number of its last write."""
        self.requests = 0
        self.statistics_reads = 0
        self.rng = random.Random(seed)
        self.during: Callable[[LiveFake, httpx.Request], None] = lambda fake, request: None
        self.cut: Callable[[list[Row]], list[Row]] = lambda rows: rows
        self._serial = 0

    # --- the data ---------------------------------------------------------------------

    def seed(self, status: str | None, count: int, same_second: int = 0, age: int = 0) -> None:
        """`count` rows, the first `same_second` in one second, the rest a second apart."""
        for n in range(count):
            second = self.now - 100_000 - age - max(0, n - max(same_second - 1, 0))
            self._put(self._new_id(), f"u{n % 50}", status, second, FAR)

    def _new_id(self) -> str:
        self._serial += 1
        return f"p{self._serial:06d}"

    def _put(self, pid: str, user: str, status: str | None, second: int, expires: int) -> None:
        self.rows[pid] = {
            "profile_id": pid,
            "user_id": user,
            "content": f"{user} fact {pid}",
            "last_modified_timestamp": second,
            "generated_from_request_id": "r",
            "expiration_timestamp": expires,
            "status": status,
            "source": "chat",
        }
        self.written[pid] = self.requests

    def insert(self, user: str = "live", lag: int = 0, expires: int = FAR) -> str:
        """What a user's message learns: a CURRENT row stamped `lag` seconds ago."""
        pid = self._new_id()
        self._put(pid, user, None, self.now - lag, expires)
        return pid

    def restamp(self, pid: str, status: str | None) -> None:
        """A status change (upgrade, dedup, expiry sweep): stamped with the server's now."""
        row = self.rows[pid]
        row["status"], row["last_modified_timestamp"] = status, self.now
        self.written[pid] = self.requests

    def delete(self, pid: str) -> None:
        del self.rows[pid]
        self.written[pid] = self.requests

    def live(self, status: str | None = "any") -> list[str]:
        """Ids of listed rows (of one stored status, or any listed one), sorted."""
        listed = LISTED.values()
        return sorted(
            pid
            for pid, row in self.rows.items()
            if row["status"] in listed and (status == "any" or row["status"] == status)
        )

    def truth(self) -> dict[str, str]:
        """id -> status name of every listed row now."""
        names = {v: k for k, v in LISTED.items()}
        return {pid: names[self.rows[pid]["status"]] for pid in self.live()}

    def random_change(self, old_only_before: int | None = None) -> None:
        """One change a busy server makes. With `old_only_before`, existing rows are changed
        only if their last write came before that request number (inserts always)."""
        pick = self.rng.random()
        if pick < 0.4:
            self.insert(user=f"live{self.rng.randrange(5)}", lag=self.rng.randrange(0, 4))
            return
        pool = [
            pid
            for pid in self.live()
            if old_only_before is None or self.written.get(pid, -1) < old_only_before
        ]
        if not pool:
            return
        pid = self.rng.choice(pool)
        if pick < 0.55:
            self.restamp(pid, "superseded")  # dedup
        elif pick < 0.65:
            self.restamp(pid, "expired")  # the expiry sweep
        elif pick < 0.75:
            self.delete(pid)  # a user deleted it, an erasure
        elif pick < 0.9:
            moves = {None: "archived", "archived": None, "pending": None}
            self.restamp(pid, moves[self.rows[pid]["status"]])
        else:
            self.rows[pid]["expiration_timestamp"] = self.now - 1  # TTL passed, not swept

    # --- the routes ---------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.during(self, request)
        self.now += self.tick
        headers = {"date": formatdate(self.now, usegmt=True)}
        if request.url.path == "/api/get_profile_statistics":
            self.statistics_reads += 1
            return httpx.Response(200, json=self._statistics(), headers=headers)
        if request.url.path == "/api/get_all_profiles":
            rows = self.cut(self._list(dict(request.url.params)))
            return httpx.Response(
                200, json={"success": True, "user_profiles": rows}, headers=headers
            )
        return httpx.Response(404, json={"detail": "not faked"})

    def _statistics(self) -> dict[str, Any]:
        counts = {"current_count": 0, "pending_count": 0, "archived_count": 0}
        names = {None: "current_count", "pending": "pending_count", "archived": "archived_count"}
        for row in self.rows.values():
            if row["status"] in names and row["expiration_timestamp"] >= self.now:
                counts[names[row["status"]]] += 1
        return {"success": True, **counts, "expiring_soon_count": 0}

    def _list(self, params: dict[str, str]) -> list[Row]:
        wanted = LISTED[params["status_filter"]]
        start, end = params.get("start_time"), params.get("end_time")
        rows = [
            row
            for row in self.rows.values()
            if row["status"] == wanted
            and (start is None or row["last_modified_timestamp"] >= int(start))
            and (end is None or row["last_modified_timestamp"] <= int(end))
        ]
        rows.sort(
            key=lambda r: (-r["last_modified_timestamp"], zlib.crc32(r["profile_id"].encode()))
        )
        limit = int(params.get("limit", 100))
        return [{k: v for k, v in row.items() if v is not None} for row in rows[:limit]]
