"""One lock per Reflexio server, held by every flow that writes to it.

Both regenerations, restore, clear-user-data, the sweep and the prompt check hold the same
Prefect global concurrency limit (1 slot), named from the server's identity
(`deployments.catalogue.lock_name`: two spellings of one server share it), for as long as
they write. A second writer waits up to its `lock_timeout_s`, then ends in the FAILED state
named `LockBusy` (`lock_busy`) with `ServerBusy`'s message, having written nothing: the exit
code says "not done", the UI shows why, and the failed-run automation, which expects
`prefect.flow-run.Failed`, stays silent (a refusal is not a fault; a nightly waiting hours for
an approval would otherwise make every sweep alert). Every writer ends that way.

The lease names its holder (the flow run, when there is one), so the Prefect API records who
holds the lock.

An unfinished writer is repaired first: right after the lock is taken,
`flows.run_repair.repair_on_lock` looks for the run journal a regeneration, restore,
clear-user-data run or sweep keeps while it writes, and for the record a prompt check keeps
(flows/check_repair.py); one that outlived its run's hold (the run died) is undone or
finished before the run does anything else, and the run says so (`Held.repaired`). When it
cannot be, the lock is released and `NotRepaired` (`CheckNotRepaired` or `RunNotRepaired`,
flows/stored_repair.py) says why; nothing else was written.

Re-entrant for its holder: a run that holds the lock can call flows that take it again (the
undo of an unfinished prompt check runs restore-profiles inside the hold);
what is held travels in a context variable, so the inner runs see the outer hold instead of
waiting on themselves, while any other run, thread or process is still refused.

Built on the Prefect client's lease calls rather than `prefect.concurrency.sync.concurrency`:
- That function's `timeout_seconds` also bounds the request that grants the slot: on a slow
  Prefect API the winner gives up after the server granted it, reports "busy", and its
  orphaned lease keeps the slot for the lease's life, so every other run is refused too.
  Here the deadline only decides whether to ask again; a request in flight is never cut.
- With `strict=True` a failed lease renewal cancels the run with a BaseException that skips
  its rollback; with renewal failures non-fatal, Prefect only logs them. Here a renewal
  failure never interrupts a step, and the holder learns of it (`Held.lost`): the run's
  next destructive step is refused (`ensure_still_held` raises LockLost), so it stops at a
  safe point, and its summary and final message say the lock was lost. Every writer asks
  before each write and before it saves or removes the run journal (which may be another
  writer's by then): the engine through its ops and journal sink, the sweep before each
  generation, restore before each page of re-created rows and each delete, clear-user-data
  before each user.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Failed, State

from deployments.catalogue import lock_name
from flows.params import WriterParams
from flows.run_repair import repair_on_lock
from flows.stored_repair import NotRepaired, run_logger

LEASE_S = 60.0
"""The lease's length (the Prefect API's minimum): a holder that dies frees the lock within
this plus the API's expiry check (every 15 s)."""
RENEW_EVERY_S = 15.0
"""How often the holder renews its lease: three missed renewals still leave it held."""
POLL_S = 1.0
"""How often a waiting writer asks again."""
LOCKED = 423
GONE = 410
LOCK_BUSY_STATE_NAME = "LockBusy"

P = TypeVar("P", bound=WriterParams)


class ServerBusy(RuntimeError):
    """Another writer holds this server's lock for longer than this run would wait."""


class LockLost(RuntimeError):
    """The run's lease on the server's lock was lost: it must not write again."""


@dataclass
class Held:
    """A lock this run holds; `lost` says why it stopped holding it (None while it holds);
    `repaired` what was undone of an unfinished prompt check when it was taken."""

    name: str
    url: str
    lost: str | None = None
    repaired: str | None = None
    stopped: bool = False
    """A write was refused because the lock was lost: the run stopped there."""

    def lost_note(self) -> str | None:
        """What to add to a run's summary and final message about its lock: `lost_message`
        when the lock was lost and the run went on to its end; None when it held it, or
        when it stopped at a write because of it (its own message says so)."""
        return self.lost_message() if self.lost and not self.stopped else None

    def lost_message(self) -> str:
        """What a run whose lock was lost says in its summary and final message."""
        return (
            f"The server lock '{self.name}' was lost during this run ({self.lost}): another "
            f"writer may have worked on {self.url} at the same time. The run went on and "
            "finished its own checks; look at the other runs on that server since then "
            "before trusting the result."
        )


_HELD: contextvars.ContextVar[tuple[Held, ...]] = contextvars.ContextVar(
    "reflexio_server_locks", default=()
)


def lock_busy(message: str, data: object = None) -> State:
    """The end state of a writer refused because another writer held the lock: of type
    FAILED (non-zero exit, never a pass) but named "LockBusy", so its event is
    `prefect.flow-run.LockBusy` and the failed-run automation does not notify."""
    return Failed(name=LOCK_BUSY_STATE_NAME, message=message, data=data)


def lease_holder() -> ConcurrencyLeaseHolder | None:
    """This flow run as the lease's holder (None outside a flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)


def busy_message(name: str, url: str, timeout_s: float) -> str:
    """Why a writer did not start: whose lock, and what to do."""
    return (
        f"Another run that writes to {url} holds its lock '{name}' (one writer per server: "
        "both regenerations, restore, clear-user-data, the sweep and the prompt check share "
        f"it); waited {timeout_s:g} s. Nothing was written. Run again when that run has "
        f"finished (Prefect UI: Concurrency -> '{name}' shows the slot in use); a run that "
        f"died frees it within about {LEASE_S + 15:g} s."
    )


def ensure_lock(name: str) -> str:
    """Make the lock exist as 1 active slot (a missing limit would only warn; an inactive or
    wider one would let two writers in). Returns what it did."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            except ObjectAlreadyExists:  # another writer created it a moment ago
                return "exists"
            return "created"
        if limit.active and limit.limit == 1:
            return "exists"
        client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(active=True, limit=1)
        )
        return "set back to 1 active slot"


def _acquire(held: Held, timeout_s: float) -> UUID:
    """Take the slot; ask again every POLL_S while it is taken, until `timeout_s` is over."""
    deadline = time.monotonic() + timeout_s
    waiting = False
    holder = lease_holder()
    with get_client(sync_client=True) as client:
        while True:
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[held.name],
                    slots=1,
                    mode="concurrency",
                    lease_duration=LEASE_S,
                    holder=holder,
                )
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != LOCKED:
                    raise
            else:
                body = response.json()
                if not body.get("limits"):
                    raise RuntimeError(f"The lock '{held.name}' was deleted while taking it.")
                return UUID(body["lease_id"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerBusy(busy_message(held.name, held.url, timeout_s))
            if not waiting:
                waiting = True
                run_logger().info(
                    "Another writer holds the lock '%s' of %s; waiting up to %g s.",
                    held.name,
                    held.url,
                    timeout_s,
                )
            time.sleep(min(POLL_S, remaining))


def lost_reason(exc: Exception, since_renewed_s: float, lease_s: float = LEASE_S) -> str | None:
    """Why a failed renewal means the lock is lost, or None while the lease may still hold."""
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == GONE:
        return "the Prefect API says its lease expired or was revoked"
    if since_renewed_s >= lease_s:
        return (
            f"no renewal succeeded for {since_renewed_s:.0f} s, longer than the "
            f"{lease_s:g} s lease; last error {type(exc).__name__}"
        )
    return None


class _Renewal:
    """Renews the lease every RENEW_EVERY_S on a daemon thread; never interrupts the work."""

    def __init__(self, lease_id: UUID, held: Held) -> None:
        self._lease_id = lease_id
        self._held = held
        self._stop = threading.Event()
        context = contextvars.copy_context()  # the run's Prefect settings and logger
        self._thread = threading.Thread(
            target=context.run, args=(self._loop,), name=f"lock-{held.name}", daemon=True
        )

    def __enter__(self) -> _Renewal:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                with get_client(sync_client=True) as client:
                    client.renew_concurrency_lease(self._lease_id, LEASE_S)
                renewed_at = time.monotonic()
            except Exception as exc:
                if self._stop.is_set():  # the hold ended while this renewal was in flight
                    return
                reason = lost_reason(exc, time.monotonic() - renewed_at)
                if reason is not None:
                    self._held.lost = reason
                    run_logger().warning("%s", self._held.lost_message())
                    return
                run_logger().warning(
                    "Renewing the lock '%s' failed (%s); its lease lasts %g s from the last "
                    "renewal, trying again in %g s.",
                    self._held.name,
                    type(exc).__name__,
                    LEASE_S,
                    RENEW_EVERY_S,
                )


def _release(lease_id: UUID, held: Held) -> None:
    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id)
    except Exception as exc:
        run_logger().warning(
            "Could not release the lock '%s' (%s); it frees itself when its lease ends, "
            "within %g s.",
            held.name,
            type(exc).__name__,
            LEASE_S,
        )


@contextmanager
def server_lock(url: str, timeout_s: float) -> Iterator[Held]:
    """Hold the lock of the server at `url` (ServerBusy after `timeout_s`); re-entrant. An
    unfinished writer is repaired first (NotRepaired when it cannot be)."""
    name = lock_name(url)
    for held in _HELD.get():
        if held.name == name:  # this run already holds it: the outer hold covers us
            yield held
            return
    ensure_lock(name)
    held = Held(name, url)
    lease_id = _acquire(held, timeout_s)
    token = _HELD.set((*_HELD.get(), held))
    try:
        with _Renewal(lease_id, held):
            held.repaired = repair_on_lock(url, functools.partial(ensure_still_held, url))
            yield held
    finally:
        _HELD.reset(token)
        _release(lease_id, held)


def ensure_still_held(url: str) -> None:
    """Before a destructive step: LockLost when this run held the server's lock and lost it
    (another writer may hold it now), so the run stops at this safe point; its journal, kept,
    tells the next writer what to repair."""
    name = lock_name(url)
    for held in _HELD.get():
        if held.name == name and held.lost:
            held.stopped = True
            raise LockLost(
                f"Stopped before a write: the server lock '{name}' was lost ({held.lost}); "
                "another writer may be working on the server. The run journal is kept: the "
                "next writer finishes or undoes what this run started."
            )


def holds_server_lock(body: Callable[[P], State]) -> Callable[[P], State]:
    """Run a writer flow's body under its server's lock: LockBusy when another writer holds
    it, Failed when an unfinished writer could not be repaired or the body stopped before a
    write because the lock was lost; what was repaired, and a lock lost while the run went
    on to its end, are added to the final message."""

    @functools.wraps(body)
    def locked(params: P) -> State:
        try:
            with server_lock(params.settings().url, params.lock_timeout_s) as held:
                state = body(params)
        except ServerBusy as exc:
            run_logger().warning("%s", exc)
            return lock_busy(str(exc))
        except (NotRepaired, LockLost) as exc:
            run_logger().error("%s", exc)
            return Failed(message=str(exc))
        lost = held.lost_note()
        if held.repaired or lost:
            state.message = " ".join(filter(None, [held.repaired, state.message, lost]))
        return state

    return locked
