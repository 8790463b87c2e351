"""Client settings of a run: the environment, a URL override, and the API key's Secret block."""

from __future__ import annotations

from deployments.catalogue import SECRET_BLOCK
from reflexio_api import ReflexioSettings


def reflexio_settings(url: str | None) -> ReflexioSettings:
    """Settings from the environment, URL override applied; the API key from
    REFLEXIO_API_KEY, else from the 'reflexio-api-key' Secret block when one exists."""
    base = ReflexioSettings()
    values = base.model_dump()
    if url:
        values["url"] = url
    if base.api_key is None:
        key = _secret_block_value(SECRET_BLOCK)
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
