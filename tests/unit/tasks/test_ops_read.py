"""PrefectOps.read: the request reaches the task whole, without Prefect walking its ids."""

from __future__ import annotations

from prefect import flow

from core.kinds import PROFILES, STATUSES
from core.live import LiveRule
from core.sinks import Reading, ReadRequest
from core.state import IdSnapshot
from reflexio_api import ReflexioSettings
from tasks import ops


class NotToBeWalked(set):
    """Ids that fail when iterated: Prefect looks for task inputs by iterating sets."""

    def __iter__(self):
        raise AssertionError("the read request's ids were walked")


def test_read_does_not_walk_the_request(prefect_api, monkeypatch):
    """At a million rows per status the ids of a LiveRule took minutes to walk (twice per
    read: task inputs, then parameter resolution); the task must get the same request."""
    seen: list[ReadRequest] = []

    def fake_read_with(client, kind, request):
        seen.append(request)
        return Reading(snapshot=IdSnapshot())

    monkeypatch.setattr(ops, "read_with", fake_read_with)
    request = ReadRequest(statuses=STATUSES, live=LiveRule(NotToBeWalked({"p1"}), None))
    prefect_ops = ops.PrefectOps(ReflexioSettings(url="http://127.0.0.1:9"), PROFILES, "none")

    @flow
    def reads() -> Reading:
        return prefect_ops.read(request)

    assert isinstance(reads(), Reading)
    assert seen == [request] and seen[0] is request
