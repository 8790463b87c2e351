"""Contract of the client against a fresh, unseeded server started with an API key and its
rate limits on: empty operation slots, AuthError without leaking the key, 429 mapping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.stack import LocalStack
from reflexio_api import (
    AuthError,
    OperationInProgress,
    ReflexioClient,
    ReflexioSettings,
    ServerReportedFailure,
    TransientError,
)
from tests.integration.conftest import client_for

pytestmark = pytest.mark.integration

API_KEY = "contract-test-key-5f3a9c"
WRONG_KEY = "contract-wrong-key-77d1e0"
MAX_RERUN_CALLS = 8
"""The rerun limit is 5 per minute: the 6th call must be refused; never loop unbounded."""


@pytest.fixture(scope="module")
def guarded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A second server: REFLEXIO_API_KEY set, per-IP rate limits on, no data."""
    state = tmp_path_factory.mktemp("reflexio-guarded")
    with LocalStack(api_key=API_KEY, rate_limits=True, state_dir=state) as running:
        yield running


@pytest.fixture
def guarded(guarded_stack: LocalStack) -> Iterator[ReflexioClient]:
    """A client holding the right key."""
    with client_for(guarded_stack, api_key=API_KEY) as opened:
        yield opened


def test_a_fresh_server_has_no_operation_status(guarded: ReflexioClient) -> None:
    """First in this file on purpose: the rate-limit test below starts operations."""
    assert guarded.get_operation_status("profile_generation") is None
    assert guarded.get_operation_status("playbook_generation") is None
    assert guarded.get_profile_statistics().current_count == 0
    assert guarded.get_stall_state().stalled is False


def test_h10_upgrade_with_nothing_pending_raises_although_http_was_200(
    guarded: ReflexioClient,
) -> None:
    with pytest.raises(ServerReportedFailure, match="No pending items found to upgrade") as caught:
        guarded.upgrade_profiles(only_affected_users=True)
    assert "HTTP 200, success=false" in str(caught.value)
    with pytest.raises(ServerReportedFailure, match="No pending items found to upgrade"):
        guarded.upgrade_user_playbooks("v1")
    assert guarded.get_profile_statistics().pending_count == 0


@pytest.mark.parametrize("api_key", [WRONG_KEY, None], ids=["wrong-key", "no-key"])
def test_a_wrong_or_missing_key_is_an_auth_error_that_never_shows_the_key(
    guarded_stack: LocalStack, api_key: str | None
) -> None:
    with client_for(guarded_stack, api_key=api_key) as client, pytest.raises(AuthError) as caught:
        client.get_profile_statistics()
    error = caught.value
    assert error.status_code == 401
    shown = f"{error} {error!r} {error.args} {vars(error)}"
    assert WRONG_KEY not in shown
    assert API_KEY not in shown
    hint = "rejected the API key" if api_key else "no API key is set"
    assert hint in str(error)


def test_health_needs_no_key(guarded_stack: LocalStack) -> None:
    settings = ReflexioSettings(url=guarded_stack.url, api_key=WRONG_KEY)
    with ReflexioClient(settings) as client:
        assert client.health().status == "healthy"


def test_the_rerun_rate_limit_is_a_transient_error_with_retry_after(
    guarded: ReflexioClient,
) -> None:
    accepted = 0
    for _ in range(MAX_RERUN_CALLS):
        try:
            guarded.rerun_profile_generation(user_id="nobody-rate-limited")
        except OperationInProgress:
            accepted += 1  # a refusal still counts against the limit
        except TransientError as exc:
            assert exc.status_code == 429
            assert exc.retry_after == 60.0, "from the body's '5 per 1 minute'"
            assert exc.maybe_applied is False
            assert "Rate limit exceeded: 5 per 1 minute" in str(exc)
            break
        else:
            accepted += 1
    else:
        pytest.fail(f"no 429 within {MAX_RERUN_CALLS} rerun calls")
    assert accepted == 5
