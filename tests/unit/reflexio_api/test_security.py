"""The key never leaks; it is never sent in clear to a remote host; no Prefect import."""

from __future__ import annotations

import httpx
import pytest

from reflexio_api import (
    ConfigurationError,
    ReflexioClient,
    ReflexioError,
    ReflexioSettings,
)

KEY = "rx-super-secret-key-123"


def test_reprs_hide_the_key() -> None:
    settings = ReflexioSettings(api_key=KEY)
    client = ReflexioClient(settings)
    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert KEY not in repr(client)


def test_key_is_sent_as_bearer(make_client) -> None:
    client, server = make_client(httpx.Response(200, json={"stalled": False}), api_key=KEY)
    client.get_stall_state()
    assert server.last.headers["authorization"] == f"Bearer {KEY}"


def _raise_on_every_call(client: ReflexioClient) -> list[ReflexioError]:
    errors: list[ReflexioError] = []
    calls = [
        client.get_stall_state,
        client.health,
        lambda: client.upgrade_profiles(only_affected_users=True),
        lambda: client.wait_for_operation("profile_generation", "op", 1),
    ]
    for call in calls:
        with pytest.raises(ReflexioError) as caught:
            call()
        errors.append(caught.value)
    return errors


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, json={"detail": f"bad key {KEY}"}),
        httpx.Response(403, json={"detail": "Forbidden"}),
        httpx.ConnectError("refused"),
    ],
)
def test_errors_never_contain_the_key(make_client, answer) -> None:
    client, _ = make_client(answer, api_key=KEY)
    for error in _raise_on_every_call(client):
        for text in (str(error), repr(error), *map(str, error.args)):
            assert KEY not in text
        assert error.__cause__ is None or KEY not in repr(error.__cause__)


def test_server_echo_of_the_key_in_401_is_not_repeated(make_client) -> None:
    client, _ = make_client(httpx.Response(401, json={"detail": f"bad key {KEY}"}), api_key=KEY)
    with pytest.raises(ReflexioError) as caught:
        client.get_stall_state()
    assert KEY not in str(caught.value)


def test_key_over_plain_http_to_a_remote_host_is_refused() -> None:
    settings = ReflexioSettings(url="http://reflexio.internal:8081", api_key=KEY)
    with pytest.raises(ConfigurationError, match="https") as caught:
        ReflexioClient(settings)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "http://reflexio.internal:8081", "api_key": KEY, "allow_insecure_http": True},
        {"url": "https://reflexio.example.com", "api_key": KEY},
        {"url": "http://localhost:8081", "api_key": KEY},
        {"url": "http://[::1]:8081", "api_key": KEY},
        {"url": "http://reflexio.internal:8081"},
    ],
)
def test_allowed_transports(settings) -> None:
    ReflexioClient(ReflexioSettings(**settings)).close()


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("REFLEXIO_URL", "https://rx.example.com/")
    monkeypatch.setenv("REFLEXIO_API_KEY", KEY)
    settings = ReflexioSettings()
    assert settings.url == "https://rx.example.com"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == KEY


def test_blank_key_counts_as_none(monkeypatch) -> None:
    monkeypatch.setenv("REFLEXIO_API_KEY", "  ")
    assert ReflexioSettings().api_key is None


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="REFLEXIO_URL"):
        ReflexioSettings(url="127.0.0.1:8081")
