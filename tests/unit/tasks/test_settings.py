"""The API key of a run: REFLEXIO_API_KEY, else the Secret block REFLEXIO_API_KEY_BLOCK names
(one per server when one pool serves several), else 'reflexio-api-key'."""

from __future__ import annotations

import pytest
from prefect.blocks.system import Secret

from deployments import setup
from tasks.settings import reflexio_settings

EU_KEY = "eu-key-0f9c2a"
US_KEY = "us-key-7d41be"


@pytest.fixture
def keys(prefect_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFLEXIO_API_KEY", raising=False)
    Secret(value=EU_KEY).save("reflexio-api-key-eu", overwrite=True)
    Secret(value=US_KEY).save("reflexio-api-key-us", overwrite=True)


def _key(url: str) -> str | None:
    settings = reflexio_settings(url)
    assert EU_KEY not in repr(settings) and US_KEY not in repr(settings)
    return settings.api_key.get_secret_value() if settings.api_key else None


def test_each_server_reads_the_block_its_deployment_names(keys, monkeypatch):
    monkeypatch.setenv("REFLEXIO_API_KEY_BLOCK", "reflexio-api-key-eu")
    assert _key("https://eu.example.com") == EU_KEY
    monkeypatch.setenv("REFLEXIO_API_KEY_BLOCK", "reflexio-api-key-us")
    assert _key("https://us.example.com") == US_KEY


def test_the_environment_key_wins_over_the_block(keys, monkeypatch):
    monkeypatch.setenv("REFLEXIO_API_KEY_BLOCK", "reflexio-api-key-eu")
    monkeypatch.setenv("REFLEXIO_API_KEY", "env-key")
    assert _key("https://eu.example.com") == "env-key"


def test_a_named_block_that_is_missing_is_an_error_naming_it(keys, monkeypatch):
    monkeypatch.setenv("REFLEXIO_API_KEY_BLOCK", "reflexio-api-key-asia")
    with pytest.raises(ValueError, match="Secret block 'reflexio-api-key-asia'") as raised:
        reflexio_settings("https://asia.example.com")
    assert EU_KEY not in str(raised.value) and US_KEY not in str(raised.value)


def test_setup_saves_the_key_under_the_named_block(keys, monkeypatch):
    monkeypatch.setenv("REFLEXIO_API_KEY_BLOCK", "reflexio-api-key-apac")
    report = setup.Report()
    setup.ensure_secret("apac-key-11aa", report)
    assert Secret.load("reflexio-api-key-apac").get() == "apac-key-11aa"
    assert report.lines == ["secret block 'reflexio-api-key-apac': saved (value not shown)"]
