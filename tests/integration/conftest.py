"""Helpers for the contract tests: typed clients on the shared stack, and row counting; the
production-size server of the at-size tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from local_stack.bulk_seed import SeedResult
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from reflexio_api.models import OperationStatus, ServiceName
from tests.integration.at_size import LARGE, TALKING, seeded_at_size

OPERATION_TIMEOUT_S = 60.0
"""Generous for the stand-in: a 6-user profile rerun takes ~3 s, a playbook rerun ~12 s."""


def client_for(stack: LocalStack, api_key: str | None = None) -> ReflexioClient:
    """A typed client on the stack's server."""
    return ReflexioClient(ReflexioSettings(url=stack.url, api_key=api_key))


@pytest.fixture
def client(stack: LocalStack) -> Iterator[ReflexioClient]:
    """A client on the session stack, in whatever state earlier tests left its data."""
    with client_for(stack) as opened:
        yield opened


@pytest.fixture
def seeded_client(seeded_stack: LocalStack) -> Iterator[ReflexioClient]:
    """A client on the session stack freshly restored to its seeded data (~5 s)."""
    with client_for(seeded_stack) as opened:
        yield opened


def current_profiles_per_user(client: ReflexioClient) -> Counter[str]:
    """How many CURRENT profiles each user has, counted from the listing."""
    return Counter(profile.user_id for profile in client.list_profiles("current"))


def run_to_end(
    client: ReflexioClient, service: ServiceName, operation_id: str
) -> tuple[OperationStatus, list[OperationStatus]]:
    """Wait for one operation; return its final status and every status passed to on_progress."""
    seen: list[OperationStatus] = []
    final = client.wait_for_operation(
        service, operation_id, timeout_s=OPERATION_TIMEOUT_S, on_progress=seen.append
    )
    return final, seen


@pytest.fixture(scope="module")
def large(stack: LocalStack) -> Iterator[SeedResult]:
    """The production-size server (tests/integration/at_size.py) with TALKING users who talk,
    for the module."""
    with seeded_at_size(stack, TALKING, LARGE) as result:
        yield result


@pytest.fixture
def large_stack(stack: LocalStack, large: SeedResult) -> LocalStack:
    """The session's server put back to `large`."""
    stack.restore(LARGE)
    return stack
