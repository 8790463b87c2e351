"""The server's config as Prefect tasks. A config can hold credentials: these tasks never log
it, never persist their results, and never cache (a retry of a whole-config write or of a
merge of the same fields is harmless, so every transient fault is retried)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.retry import honour_retry_after, retry_options

CONFIG = {"cache_policy": NO_CACHE, "persist_result": False, **retry_options()}


@task(name="read-config", **CONFIG)
def read_config(settings: ReflexioSettings) -> dict[str, Any]:
    """The whole config."""
    with honour_retry_after(), ReflexioClient(settings) as client:
        return client.get_config()


@task(name="apply-config", **CONFIG)
def apply_config(settings: ReflexioSettings, candidate: Mapping[str, Any]) -> None:
    """Merge a candidate's top-level fields into the config."""
    with honour_retry_after(), ReflexioClient(settings) as client:
        client.update_config(candidate)


@task(name="put-config-back", **CONFIG)
def put_config_back(settings: ReflexioSettings, config: Mapping[str, Any]) -> None:
    """Replace the whole config with `config` (as read before a change)."""
    with honour_retry_after(), ReflexioClient(settings) as client:
        client.set_config(config)
