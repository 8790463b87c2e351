"""Pacing of rate-limited server routes through Prefect's `rate_limit`, shared by every
process that uses the same Prefect API.

The server limits each route per client IP (H11: 5/min on each manual_* route, 10/min on
clear_user_data), so every sweep, manual run and clear-user-data on one server must share
one pace, whichever process or deployment it runs in. Each paced route of a server has a
Prefect global concurrency limit (`deployments.catalogue.rate_limit_name`): 1 slot that
decays in `interval_s` seconds. Taking the slot is a call's turn.

Why read before taking: in Prefect 3.9 a refused attempt rewrites the limit's row
(`bulk_update_denied_slots`), which restarts its decay clock. A caller that retried on
Prefect's Retry-After (a random interval around the decay time) could keep pushing the
slot's release away, for itself and everyone else. So a turn polls the limit with reads,
which change nothing, until the slot has decayed, then takes it with one short
`rate_limit` attempt; a process that lost that race goes back to reading.

A 429 that still happens (another client on the same IP) is waited out (Retry-After, else
the client's estimate, else a full minute) and the call repeated: a 429 is refused before
any work, so repeating is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectNotFound

from deployments.catalogue import rate_limit_name
from reflexio_api import TransientError

T = TypeVar("T")

PACING_MARGIN_S = 1.0
"""Added to every gap: calls spaced exactly 60/limit apart on our clock can still reach the
server inside its window (the first request's connection setup delays its timestamp);
measured: 6 calls 12.0 s apart met one 429 on the rate-limited local server."""
POLL_S = 0.5
"""How often a waiting call reads the limit."""
TAKE_TIMEOUT_S = 2.0
"""One attempt to take a decayed slot; longer would sit in Prefect's own retry."""
MAX_TURN_WAIT_S = 900.0
"""A turn that has not come in this long means the limit is misconfigured (e.g. inactive)."""


def spacing_for(calls_per_minute: int) -> float:
    """Start-to-start gap for a route limited to `calls_per_minute`, with the margin."""
    return 60.0 / calls_per_minute + PACING_MARGIN_S


def ensure_rate_limit(name: str, interval_s: float) -> str:
    """Create the limit (1 slot decaying in `interval_s`) or bring an existing one to it;
    say which."""
    decay = 1.0 / interval_s
    with get_client(sync_client=True) as client:
        try:
            found = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=1, slot_decay_per_second=decay)
            )
            return "created"
        if found.limit == 1 and found.active and abs(found.slot_decay_per_second - decay) < 1e-9:
            return "exists"
        client.update_global_concurrency_limit(
            name,
            GlobalConcurrencyLimitUpdate(limit=1, active=True, slot_decay_per_second=decay),
        )
        return "updated"


def slot_is_free(name: str) -> bool:
    """True when the limit's slot has decayed (a read: it never moves the decay clock)."""
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots == 0


def take_slot(name: str) -> bool:
    """One short attempt to take the slot through `rate_limit`; False when another won."""
    try:
        rate_limit(name, occupy=1, timeout_seconds=TAKE_TIMEOUT_S, strict=True)
    except TimeoutError:
        return False
    return True


@dataclass
class SharedPacer:
    """Turns on one route of one server, shared through the Prefect API."""

    name: str
    free: Callable[[], bool]
    take: Callable[[], bool]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    max_wait_s: float = MAX_TURN_WAIT_S
    not_before: float = 0.0

    def acquire(self) -> float:
        """Wait for this call's turn; return the seconds waited."""
        started = self.clock()
        if self.not_before > started:
            self.sleep(self.not_before - started)
        while not (self.free() and self.take()):
            if self.clock() - started > self.max_wait_s:
                raise RuntimeError(
                    f"No turn on the Prefect rate limit '{self.name}' within "
                    f"{self.max_wait_s:g} s: check in the Prefect UI (Concurrency) that it "
                    "is active with 1 slot; `python -m deployments.setup` recreates it."
                )
            self.sleep(POLL_S)
        return self.clock() - started

    def push_back(self, seconds: float) -> None:
        """After a 429: no call of this process before `seconds` from now."""
        self.not_before = max(self.not_before, self.clock() + seconds)


def pacer_for(url: str, route: str, interval_s: float) -> SharedPacer:
    """The shared pacer of one route of one server; its limit is created when missing."""
    name = rate_limit_name(url, route)
    ensure_rate_limit(name, interval_s)
    return SharedPacer(name, free=lambda: slot_is_free(name), take=lambda: take_slot(name))


@dataclass
class PacedCall:
    """What a paced call returned and what it cost."""

    result: Any
    started_at: float
    waited_s: float
    rate_limited: int


def paced_call(
    pacer: SharedPacer,
    call: Callable[[], T],
    *,
    max_rate_limited: int = 3,
    default_wait_s: float = 60.0,
    max_wait_s: float = 120.0,
    clock: Callable[[], float] = time.time,
) -> PacedCall:
    """Run `call` on its turn; on HTTP 429 wait it out and try again. Other errors propagate.
    `started_at` is epoch seconds, comparable across processes."""
    rate_limited = 0
    waited = 0.0
    while True:
        waited += pacer.acquire()
        started = clock()
        try:
            return PacedCall(call(), started, waited, rate_limited)
        except TransientError as exc:
            if exc.status_code != 429 or rate_limited >= max_rate_limited:
                raise
            rate_limited += 1
            pacer.push_back(min(exc.retry_after or default_wait_s, max_wait_s))
