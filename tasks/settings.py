"""Client settings of a run: the environment, a URL override, and the API key's Secret block."""

from __future__ import annotations

import os

from deployments.catalogue import SECRET_BLOCK
from reflexio_api import ReflexioSettings

API_KEY_BLOCK_ENV = "REFLEXIO_API_KEY_BLOCK"
"""Names the API key's Secret block: one per server when one pool serves several (set in each
deployment's job_variables.env); unset: SECRET_BLOCK."""


def api_key_block() -> str:
    """The Secret block the API key is read from (and `deployments.setup` saves it to)."""
    return os.environ.get(API_KEY_BLOCK_ENV, "").strip() or SECRET_BLOCK


def reflexio_settings(url: str | None) -> ReflexioSettings:
    """Settings from the environment, URL override applied; the API key from
    REFLEXIO_API_KEY, else from the Secret block `api_key_block()` names. A block named in
    REFLEXIO_API_KEY_BLOCK must exist and hold a key: ValueError naming it otherwise; the
    default block may be missing (a keyless server)."""
    base = ReflexioSettings()
    values = base.model_dump()
    if url:
        values["url"] = url
    if base.api_key is None:
        name = api_key_block()
        key = _secret_block_value(name)
        if key is None and name != SECRET_BLOCK:
            raise ValueError(
                f"{API_KEY_BLOCK_ENV} names the Secret block '{name}', which does not exist "
                "or holds no key: save the server's key there (REFLEXIO_API_KEY=... "
                f"{API_KEY_BLOCK_ENV}={name} python -m deployments.setup) or correct the name"
            )
        if key:
            values["api_key"] = key
    return ReflexioSettings(**values)


def _secret_block_value(name: str) -> str | None:
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(name).get()
    except Exception:
        return None
    return value if isinstance(value, str) and value.strip() else None
