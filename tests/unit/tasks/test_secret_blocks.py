"""The documents writers keep on the Prefect API (tasks/secret_blocks.py), on a real test API."""

from __future__ import annotations

import httpx
import pytest

from tasks.secret_blocks import delete_secret, load_secret, save_secret


@pytest.fixture
def api_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request a sync Prefect client sends from here on, as 'METHOD path', but the
    CSRF token a new client fetches before its first write."""
    sent: list[str] = []
    send = httpx.Client.send

    def counted(self: httpx.Client, request: httpx.Request, **kwargs: object) -> httpx.Response:
        if not request.url.path.endswith("/csrf-token"):
            sent.append(f"{request.method} {request.url.path}")
        return send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counted)
    return sent


def test_a_document_is_saved_replaced_and_removed(prefect_api) -> None:
    save_secret("doc-lifecycle", '{"step": 1}')
    assert load_secret("doc-lifecycle") == '{"step": 1}'
    save_secret("doc-lifecycle", '{"step": 2}')
    assert load_secret("doc-lifecycle") == '{"step": 2}'
    delete_secret("doc-lifecycle")
    assert load_secret("doc-lifecycle") is None


def test_replacing_a_document_reads_it_then_updates_it(prefect_api, api_requests) -> None:
    save_secret("doc-replaced", "first")
    api_requests.clear()
    save_secret("doc-replaced", "second")
    assert [call.split()[0] for call in api_requests] == ["GET", "PATCH"], api_requests
    assert load_secret("doc-replaced") == "second"
