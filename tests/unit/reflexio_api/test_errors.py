"""Every failure becomes one typed error whose message says what happened and what to do."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from reflexio_api import (
    AuthError,
    ClientError,
    OperationInProgress,
    ReflexioError,
    ServerReportedFailure,
    TransientError,
    UnexpectedPayload,
    is_retryable,
)
from reflexio_api._responses import parse_retry_after, rate_limit_window
from reflexio_api.errors import clean_server_text

from .conftest import ok

TRACEBACK = (
    "Upgrade failed: Traceback (most recent call last):\n"
    '  File "/srv/reflexio/lib/_user_playbook.py", line 310, in upgrade\n'
    "    storage.promote(rows)\n"
    "sqlite3.IntegrityError: UNIQUE constraint failed: user_playbooks.id\n"
)


def test_401_with_key_says_check_the_key(make_client) -> None:
    client, _ = make_client(httpx.Response(401, json={"detail": "Invalid API key"}), api_key="k")
    with pytest.raises(AuthError) as caught:
        client.get_stall_state()
    assert caught.value.status_code == 401
    assert str(caught.value) == (
        "Reflexio at http://127.0.0.1:8081 rejected the API key (401). Check REFLEXIO_API_KEY."
    )


def test_401_without_key_says_set_one(make_client) -> None:
    client, _ = make_client(httpx.Response(401, json={"detail": "Authentication required"}))
    with pytest.raises(AuthError, match="no API key is set"):
        client.get_stall_state()


def test_403_carries_the_reason(make_client) -> None:
    answer = httpx.Response(403, json={"detail": "Forbidden: Suspicious user agent"})
    client, _ = make_client(answer)
    with pytest.raises(AuthError, match="Suspicious user agent") as caught:
        client.get_stall_state()
    assert caught.value.status_code == 403


def test_422_lists_the_fields_without_echoing_input(make_client) -> None:
    detail = [
        {
            "type": "missing",
            "loc": ["body", "session_id"],
            "msg": "Field required",
            "input": {"secret": "do-not-echo"},
        }
    ]
    client, _ = make_client(httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ClientError) as caught:
        client.publish_interaction("u", "s", "chat", "v1", [{"role": "User", "content": "x"}])
    assert caught.value.status_code == 422
    assert caught.value.detail == "body.session_id: Field required"
    assert "do-not-echo" not in str(caught.value)
    assert not is_retryable(caught.value)


def test_update_config_422_dict_detail(make_client) -> None:
    detail = {
        "error": "Invalid partial config (top-level shallow merge)",
        "hint": "Nested objects are replaced wholesale",
        "validation_errors": [{"loc": ["stride_size"], "msg": "must be <= window_size"}],
    }
    client, _ = make_client(httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ClientError, match="stride_size: must be <= window_size"):
        client.update_config({"stride_size": 99})


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("Wed, 01 Jan 2025 00:00:30 GMT", 30.0), ("soon", None)]
)
def test_parse_retry_after(header, expected) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


def test_429_is_transient_with_retry_after(make_client) -> None:
    answer = httpx.Response(
        429, json={"error": "Rate limit exceeded: 5 per 1 minute"}, headers={"Retry-After": "12"}
    )
    client, _ = make_client(answer)
    with pytest.raises(TransientError, match=r"rate-limited.*5 per 1 minute") as caught:
        client.rerun_profile_generation()
    assert caught.value.retry_after == 12.0
    assert caught.value.maybe_applied is False
    assert is_retryable(caught.value)


def test_429_with_http_date_gives_a_non_negative_delay(make_client) -> None:
    answer = httpx.Response(429, json={}, headers={"Retry-After": "Wed, 01 Jan 2025 00:00:00 GMT"})
    client, _ = make_client(answer)
    with pytest.raises(TransientError) as caught:
        client.rerun_profile_generation()
    assert caught.value.retry_after == 0.0


def test_429_without_retry_after_header_waits_for_the_limit_window(make_client) -> None:
    """Reflexio 0.2.32 sends no Retry-After: the window in the body is the delay."""
    answer = httpx.Response(429, json={"error": "Rate limit exceeded: 5 per 1 minute"})
    client, _ = make_client(answer)
    with pytest.raises(TransientError, match=r"retry after 60 s") as caught:
        client.rerun_profile_generation()
    assert caught.value.retry_after == 60.0


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("Rate limit exceeded: 5 per 1 minute", 60.0),
        ("Rate limit exceeded: 30 per 1 minutes", 60.0),
        ("Rate limit exceeded: 100 per hour", 3600.0),
        ("Rate limit exceeded: 10 per 15 second", 15.0),
        ("Rate limit exceeded", None),
    ],
)
def test_rate_limit_window(detail: str, expected: float | None) -> None:
    assert rate_limit_window(detail) == expected


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_5xx_is_transient(make_client, code) -> None:
    client, _ = make_client(httpx.Response(code, json={"detail": "boom"}))
    with pytest.raises(TransientError, match=f"HTTP {code}: boom") as caught:
        client.upgrade_profiles(only_affected_users=True)
    assert caught.value.status_code == code
    assert caught.value.maybe_applied is True
    assert is_retryable(caught.value)


def test_connect_error_is_transient_and_not_applied(make_client) -> None:
    client, _ = make_client(httpx.ConnectError("connection refused"))
    with pytest.raises(TransientError, match="Nothing was sent") as caught:
        client.health()
    assert caught.value.maybe_applied is False


def test_read_timeout_is_transient_and_may_have_applied(make_client) -> None:
    client, _ = make_client(httpx.ReadTimeout("read timed out"))
    with pytest.raises(TransientError, match=r"timed out.*may have reached") as caught:
        client.upgrade_profiles(only_affected_users=True)
    assert caught.value.maybe_applied is True


def test_html_error_page_is_unexpected_payload(make_client) -> None:
    page = httpx.Response(
        200, text="<!DOCTYPE html><html>Login</html>", headers={"content-type": "text/html"}
    )
    client, _ = make_client(page)
    with pytest.raises(UnexpectedPayload, match="HTML page instead of JSON"):
        client.get_stall_state()


def test_html_5xx_page_is_still_transient(make_client) -> None:
    page = httpx.Response(
        502, text="<html>Bad gateway</html>", headers={"content-type": "text/html"}
    )
    client, _ = make_client(page)
    with pytest.raises(TransientError, match="HTTP 502: an HTML page"):
        client.get_stall_state()


def test_success_false_with_traceback_is_cleaned(make_client) -> None:
    client, _ = make_client(httpx.Response(200, json={"success": False, "message": TRACEBACK}))
    with pytest.raises(ServerReportedFailure) as caught:
        client.upgrade_user_playbooks("v1")
    text = str(caught.value)
    assert "File " not in text and "storage.promote" not in text
    assert "IntegrityError: UNIQUE constraint failed" in text
    assert caught.value.server_message.startswith("Upgrade failed: [traceback removed]")
    assert not is_retryable(caught.value)


def test_success_false_in_progress_is_specific(make_client) -> None:
    answer = httpx.Response(
        200, json={"success": False, "msg": "Another generation attempt is already in progress"}
    )
    client, _ = make_client(answer)
    with pytest.raises(OperationInProgress, match="cancel_operation") as caught:
        client.rerun_profile_generation()
    assert isinstance(caught.value, ServerReportedFailure)


def test_missing_field_is_named(make_client) -> None:
    client, _ = make_client(ok(msg="Profile generation started"))
    with pytest.raises(UnexpectedPayload) as caught:
        client.rerun_profile_generation()
    assert caught.value.field == "operation_id"
    assert "operation_id" in str(caught.value)


def test_missing_success_is_unexpected(make_client) -> None:
    client, _ = make_client(httpx.Response(200, json={"profiles_promoted": 3}))
    with pytest.raises(UnexpectedPayload) as caught:
        client.upgrade_profiles(only_affected_users=True)
    assert caught.value.field == "success"


def test_wrong_type_is_named(make_client) -> None:
    client, _ = make_client(ok(user_profiles=[{"profile_id": 1}]))
    with pytest.raises(UnexpectedPayload) as caught:
        client.list_profiles("current")
    assert caught.value.field == "user_profiles.0.profile_id"


def test_non_object_body_is_unexpected(make_client) -> None:
    client, _ = make_client(httpx.Response(200, json=[1, 2]))
    with pytest.raises(UnexpectedPayload, match="not an object"):
        client.get_config()


def test_404_and_409_are_client_errors(make_client) -> None:
    client, _ = make_client(
        httpx.Response(404, json={"detail": "Aggregation operation not found"}),
        httpx.Response(
            409, json={"detail": {"message": "parameters changed", "operation_id": "a"}}
        ),
    )
    with pytest.raises(ClientError, match="not found"):
        client.get_playbook_aggregation_operation("nope")
    with pytest.raises(ClientError, match="parameters changed"):
        client.start_playbook_aggregation_operation("r1", "v2")


def test_redirect_is_not_followed(make_client) -> None:
    answer = httpx.Response(307, headers={"location": "https://elsewhere.example/api/x"})
    client, server = make_client(answer, api_key="k")
    with pytest.raises(ClientError, match=r"redirected.*elsewhere"):
        client.get_stall_state()
    assert len(server.requests) == 1


def test_only_transient_errors_are_retryable() -> None:
    assert is_retryable(TransientError("x"))
    assert not is_retryable(ReflexioError("x"))
    assert not is_retryable(AuthError("x", status_code=401))
    assert not is_retryable(ValueError("x"))


def test_chained_tracebacks_keep_each_exception_line() -> None:
    text = (
        "Traceback (most recent call last):\n  File 'a', line 1\nKeyError: 'x'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n  File 'b', line 2\nRuntimeError: y"
    )
    assert clean_server_text(text) == (
        "[traceback removed] KeyError: 'x' [traceback removed] RuntimeError: y"
    )


def test_long_server_text_is_bounded() -> None:
    assert len(clean_server_text("x" * 5000)) == 500
