"""The async client shares the request layer: same requests, same errors, same waiting."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest

from reflexio_api import (
    AsyncReflexioClient,
    OperationInProgress,
    OperationReplaced,
    ReflexioClient,
    TransientError,
)

from .conftest import ok
from .test_waiting import slot


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_") and name not in {"close", "aclose"}
    }


def test_same_methods_and_signatures() -> None:
    sync_methods = _public_methods(ReflexioClient)
    async_methods = _public_methods(AsyncReflexioClient)
    assert sync_methods == async_methods
    for name in async_methods:
        assert inspect.iscoroutinefunction(getattr(AsyncReflexioClient, name)), name


def test_async_request_and_parse(make_async_client) -> None:
    client, server = make_async_client(ok(operation_id="op-7"))

    async def run() -> str:
        async with client:
            return (await client.rerun_playbook_generation("v1", source="chat")).operation_id

    assert asyncio.run(run()) == "op-7"
    assert server.last.url.path == "/api/rerun_playbook_generation"
    assert server.last_json() == {"agent_version": "v1", "source": "chat"}


def test_async_error_mapping(make_async_client) -> None:
    client, _ = make_async_client(
        httpx.Response(
            200, json={"success": False, "msg": "Another generation attempt is already in progress"}
        ),
        httpx.Response(429, json={"error": "Rate limit exceeded"}, headers={"Retry-After": "3"}),
    )
    with pytest.raises(OperationInProgress):
        asyncio.run(client.rerun_profile_generation())
    with pytest.raises(TransientError) as caught:
        asyncio.run(client.rerun_profile_generation())
    assert caught.value.retry_after == 3.0


def test_async_wait_backs_off_and_matches_id(make_async_client, clock) -> None:
    client, _ = make_async_client(
        slot("in_progress"), httpx.ReadTimeout("slow"), slot("in_progress"), slot("completed")
    )
    seen = []
    final = asyncio.run(
        client.wait_for_operation("profile_generation", "op-1", 60, on_progress=seen.append)
    )
    assert final.status == "completed"
    assert len(seen) == 3
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45])


def test_async_wait_other_operation(make_async_client) -> None:
    client, _ = make_async_client(slot("completed", operation_id="op-2"))
    with pytest.raises(OperationReplaced):
        asyncio.run(client.wait_for_operation("profile_generation", "op-1", 60))
