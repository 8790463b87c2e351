"""wait_for_operation: backoff, matching by id, replacement, timeout, transient errors."""

from __future__ import annotations

import httpx
import pytest

from reflexio_api import AuthError, OperationReplaced, OperationTimeout, PollPolicy

from .conftest import ok


def slot(
    status: str,
    operation_id: str | None = "op-1",
    processed: int = 0,
    error_message: str | None = None,
) -> httpx.Response:
    params = {} if operation_id is None else {"operation_id": operation_id}
    return ok(
        operation_status={
            "service_name": "profile_generation",
            "status": status,
            "started_at": 1,
            "total_users": 4,
            "processed_users": processed,
            "request_params": params,
            "error_message": error_message,
        }
    )


STALE = "Auto-recovered: operation was stuck for 601s (threshold: 600s)"
"""What reflexio-ai 0.2.32 writes over a running operation older than 600 s (H19)."""


def test_backoff_grows_geometrically_to_the_cap() -> None:
    delays = PollPolicy(initial_s=0.2, factor=2.0, cap_s=1.0).delays()
    assert [next(delays) for _ in range(6)] == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_returns_completed_status_and_reports_progress(make_client, clock) -> None:
    answers = [slot("in_progress", processed=n) for n in range(4)] + [
        slot("completed", processed=4)
    ]
    client, server = make_client(*answers)
    seen = []
    final = client.wait_for_operation("profile_generation", "op-1", 60, on_progress=seen.append)
    assert final.status == "completed"
    assert [status.processed_users for status in seen] == [0, 1, 2, 3, 4]
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45, 0.5])
    assert server.last.url.params["service_name"] == "profile_generation"


def test_sleeps_reach_the_cap(make_client, clock) -> None:
    client, _ = make_client(*([slot("in_progress")] * 12), slot("completed"))
    client.wait_for_operation("profile_generation", "op-1", 600)
    assert max(clock.sleeps) == 0.5
    assert clock.sleeps[-3:] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_failed_and_cancelled_are_returned_not_hidden(make_client, final) -> None:
    client, _ = make_client(slot("in_progress"), slot(final))
    assert client.wait_for_operation("profile_generation", "op-1", 60).status == final


def test_another_operation_in_the_slot_is_an_error(make_client) -> None:
    client, _ = make_client(slot("in_progress"), slot("completed", operation_id="op-OTHER"))
    with pytest.raises(OperationReplaced, match=r"op-OTHER.*not profile_generation operation op-1"):
        client.wait_for_operation("profile_generation", "op-1", 60)


def test_completed_slot_of_another_operation_is_never_success(make_client) -> None:
    client, _ = make_client(slot("completed", operation_id=None))
    with pytest.raises(OperationReplaced) as caught:
        client.wait_for_operation("profile_generation", "op-1", 60)
    assert (caught.value.expected_id, caught.value.seen_id) == ("op-1", None)


def test_empty_slot_is_an_error(make_client) -> None:
    gone = httpx.Response(200, json={"success": False, "msg": "No operation found for service"})
    client, _ = make_client(gone)
    with pytest.raises(OperationReplaced, match="no longer reports"):
        client.wait_for_operation("profile_generation", "op-1", 60)


def test_timeout_says_what_was_last_seen(make_client, clock) -> None:
    client, server = make_client(slot("in_progress", processed=2))
    with pytest.raises(OperationTimeout, match="2/4 users") as caught:
        client.wait_for_operation("profile_generation", "op-1", 3)
    assert clock.now == pytest.approx(3)
    assert caught.value.last_status.status == "in_progress"
    assert len(server.requests) == len(clock.sleeps) + 1


def test_transient_errors_are_tolerated_and_counted(make_client) -> None:
    client, _ = make_client(
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"detail": "busy"}),
        slot("completed"),
    )
    final = client.wait_for_operation("profile_generation", "op-1", 60)
    assert final.status == "completed"


def test_transient_errors_until_the_deadline_end_in_timeout(make_client, caplog) -> None:
    client, _ = make_client(httpx.ConnectError("refused"))
    with pytest.raises(OperationTimeout, match="never seen") as caught:
        client.wait_for_operation("profile_generation", "op-1", 2)
    assert caught.value.transient_errors >= 3
    assert "transient errors so far" in caplog.text


def test_non_transient_errors_stop_the_wait(make_client) -> None:
    client, server = make_client(httpx.Response(401, json={"detail": "Authentication required"}))
    with pytest.raises(AuthError):
        client.wait_for_operation("profile_generation", "op-1", 60)
    assert len(server.requests) == 1


def test_a_stale_check_failure_of_a_running_operation_is_waited_through(make_client, clock) -> None:
    """H19: the slot says failed, but users keep being processed, then the operation writes
    its own end (completed, the stale check's message left in place, as 0.2.32 does)."""
    answers = [slot("in_progress", processed=1), slot("failed", processed=1, error_message=STALE)]
    answers += [slot("failed", processed=n, error_message=STALE) for n in (2, 3)]
    answers += [slot("completed", processed=4, error_message=STALE)]
    client, server = make_client(*answers)
    final = client.wait_for_operation("profile_generation", "op-1", 60)
    assert (final.status, final.processed_users) == ("completed", 4)
    assert len(server.requests) == 5


def test_a_stale_check_failure_with_no_progress_ends_the_wait_after_the_quiet_time(
    make_client, clock
) -> None:
    """A dead operation (the server restarted under it) stays failed and still: the failure
    is its end once nothing moved for quiet_s, not at the first sight of it."""
    client, _ = make_client(
        slot("in_progress", processed=2), slot("failed", processed=2, error_message=STALE)
    )
    policy = PollPolicy(quiet_s=30)
    final = client.wait_for_operation("profile_generation", "op-1", 600, policy=policy)
    assert (final.status, final.auto_recovered) == ("failed", True)
    assert 30 <= clock.now < 31


def test_a_stale_check_failure_still_moving_at_the_deadline_times_out(make_client) -> None:
    client, _ = make_client(
        *[slot("failed", processed=n % 4, error_message=STALE) for n in range(200)]
    )
    with pytest.raises(OperationTimeout, match="last seen failed"):
        client.wait_for_operation("profile_generation", "op-1", 20)


def test_a_failure_of_the_operation_itself_ends_the_wait_at_once(make_client) -> None:
    client, server = make_client(
        slot("in_progress"), slot("failed", error_message="Generation failed for 1 user(s)")
    )
    final = client.wait_for_operation("profile_generation", "op-1", 600)
    assert (final.status, final.auto_recovered) == ("failed", False)
    assert len(server.requests) == 2


def test_running_operation_is_the_slot_in_progress(make_client, clock) -> None:
    client, server = make_client(slot("in_progress", processed=1))
    assert client.running_operation("profile_generation").processed_users == 1
    assert (len(server.requests), clock.sleeps) == (1, [])


@pytest.mark.parametrize("final", ["completed", "cancelled"])
def test_no_operation_runs_after_one_ended(make_client, final) -> None:
    client, server = make_client(slot(final))
    assert client.running_operation("profile_generation") is None
    assert len(server.requests) == 1


def test_a_stale_check_failure_still_progressing_is_a_running_operation(make_client, clock) -> None:
    client, _ = make_client(
        slot("failed", processed=1, error_message=STALE),
        slot("failed", processed=1, error_message=STALE),
        slot("failed", processed=2, error_message=STALE),
    )
    running = client.running_operation("profile_generation")
    assert (running.status, running.processed_users) == ("failed", 2)
    assert clock.now == 2


def test_a_stale_check_failure_that_never_moves_is_no_running_operation(make_client, clock) -> None:
    client, _ = make_client(slot("failed", processed=1, error_message=STALE))
    assert client.running_operation("profile_generation", probe_s=10) is None
    assert clock.now == 10


def test_a_stale_check_failure_that_writes_its_own_end_is_no_running_operation(
    make_client, clock
) -> None:
    client, _ = make_client(
        slot("failed", processed=3, error_message=STALE),
        slot("completed", processed=4, error_message=STALE),
    )
    assert client.running_operation("profile_generation") is None
    assert clock.now == 1


@pytest.mark.parametrize(
    ("then", "running"),
    [
        (slot("in_progress", operation_id="op-2"), "op-2"),  # replaced by one that runs
        (slot("in_progress", processed=1), "op-1"),  # its own write put it back in progress
        (slot("completed", operation_id="op-2"), None),  # replaced by one that ended
        (httpx.Response(200, json={"success": False, "msg": "No operation found"}), None),
    ],
)
def test_a_stale_check_failure_then_another_slot(make_client, then, running) -> None:
    client, _ = make_client(slot("failed", processed=1, error_message=STALE), then)
    found = client.running_operation("profile_generation")
    assert (found.operation_id if found else None) == running


def test_a_failure_of_the_operation_itself_is_no_running_operation(make_client, clock) -> None:
    client, _ = make_client(slot("failed", error_message="Generation failed for 1 user(s)"))
    assert client.running_operation("profile_generation") is None
    assert clock.sleeps == []


def test_a_stale_check_failure_then_the_operations_own_failure_ends_the_wait(make_client) -> None:
    client, _ = make_client(
        slot("failed", processed=2, error_message=STALE),
        slot("failed", processed=3, error_message=STALE),
        slot("failed", processed=4, error_message="Generation failed for 1 user(s)"),
    )
    final = client.wait_for_operation("profile_generation", "op-1", 60)
    assert (final.processed_users, final.auto_recovered) == (4, False)
