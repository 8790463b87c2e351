"""A throwaway Reflexio server for the prompt check's golden set: the pinned server the tests
and the local default use, on a free loopback port, with its state in a temporary folder
that is removed afterwards. It talks to a real provider with the key it is given (or to an
OpenAI-compatible endpoint such as the stand-in), never to another Reflexio server's data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from local_stack.reflexio_server import ReflexioServer
from local_stack.server_venv import ensure_server_venv


@contextmanager
def scratch_server(provider_key: str, llm_base_url: str | None = None) -> Iterator[str]:
    """Start a fresh server (about 7 s with the venv cached, 1 minute to build it) and yield
    its URL; stop it and delete its data on the way out. `llm_base_url`: an endpoint for
    chat and embeddings (the stand-in); None: the provider's own API."""
    venv = ensure_server_venv()
    with tempfile.TemporaryDirectory(prefix="reflexio-golden-") as state:
        server = ReflexioServer(venv, Path(state), llm_base_url, provider_key=provider_key)
        try:
            server.start()  # inside: a start cut short by a timeout is stopped too
            yield server.url
        finally:
            server.stop(graceful=False)
