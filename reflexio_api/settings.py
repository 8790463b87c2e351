"""Connection settings, read from the environment with the official SDK's variable names."""

from __future__ import annotations

import ipaddress
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reflexio_api.errors import ConfigurationError


def _package_version() -> str:
    try:
        return version("reflexio-pipelines")
    except PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"reflexio-pipelines/{_package_version()}"
"""Sent on every request: the server answers 403 to a missing or bot-like User-Agent."""


class ReflexioSettings(BaseSettings):
    """Where the server is, how to authenticate, how long to wait.

    Environment: REFLEXIO_URL, REFLEXIO_API_KEY, REFLEXIO_CONNECT_TIMEOUT_S,
    REFLEXIO_READ_TIMEOUT_S, REFLEXIO_GENERATION_TIMEOUT_S, REFLEXIO_ALLOW_INSECURE_HTTP.
    """

    model_config = SettingsConfigDict(env_prefix="REFLEXIO_", extra="ignore")

    url: str = "http://127.0.0.1:8081"
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    generation_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="Read timeout of synchronous generation calls (manual_*, aggregation).",
    )
    allow_insecure_http: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("REFLEXIO_URL must look like http://host:port or https://host")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _blank_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    def timeout(self, *, long_running: bool = False) -> httpx.Timeout:
        """httpx timeouts; `long_running` raises the read timeout for synchronous generation."""
        read = self.generation_timeout_s if long_running else self.read_timeout_s
        return httpx.Timeout(connect=self.connect_timeout_s, read=read, write=read, pool=read)

    def headers(self) -> dict[str, str]:
        """Request headers, with the bearer key when one is set. Never log these."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def check_transport_security(self) -> None:
        """Refuse to send a bearer key over plain http to a host that is not loopback."""
        parts = urlsplit(self.url)
        if (
            self.api_key is None
            or parts.scheme == "https"
            or _is_loopback(parts.hostname or "")
            or self.allow_insecure_http
        ):
            return
        raise ConfigurationError(
            f"Refusing to send REFLEXIO_API_KEY over plain http to {self.url}: anyone on the "
            "network path could read it. Use an https:// REFLEXIO_URL, or set "
            "allow_insecure_http=True (REFLEXIO_ALLOW_INSECURE_HTTP=true) if the network is "
            "trusted."
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
