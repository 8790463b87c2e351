"""Mock-transport helpers: a client whose server is a scripted list of answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reflexio_api import ReflexioClient, ReflexioSettings

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """Replies with scripted answers in order (the last one repeats) and records requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [httpx.Response(200, json={"success": True})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content) if self.last.content else None


class FakeClock:
    """A monotonic clock that only moves when the fake sleep is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ok(**fields: Any) -> httpx.Response:
    """A 200 answer with success:true and the given fields."""
    return httpx.Response(200, json={"success": True, **fields})


@pytest.fixture(autouse=True)
def _no_reflexio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not pick up a developer's REFLEXIO_* variables."""
    for name in ("URL", "API_KEY", "ALLOW_INSECURE_HTTP", "READ_TIMEOUT_S"):
        monkeypatch.delenv(f"REFLEXIO_{name}", raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Callable[..., tuple[ReflexioClient, FakeServer]]:
    def make(*answers: Answer, **settings: Any) -> tuple[ReflexioClient, FakeServer]:
        server = FakeServer(*answers)
        client = ReflexioClient(
            ReflexioSettings(**settings),
            transport=httpx.MockTransport(server),
            sleep=clock.sleep,
            clock=clock,
        )
        return client, server

    return make
