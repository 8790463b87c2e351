"""Complete listings over capped, offset-less endpoints (H13), against a fake of the SQL.

`FakeReflexio` answers get_all_profiles / get_user_playbooks / get_agent_playbooks exactly
as reflexio-ai 0.2.32's SQLite storage does: status filter, inclusive window on the right
column (profiles: integer seconds, or with `date_field=created_at` their created_at ISO text
compared as strings with `_epoch_to_iso` bounds, never sent back; playbooks: ISO text
compared as strings, bounds made with `_epoch_to_iso(int(dt.timestamp()))`), ORDER BY,
LIMIT; 422 when end <= start.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from reflexio_api import IncompleteListing, ReflexioClient, ReflexioSettings
from reflexio_api.paging import Ordering, Window, iter_pages

T0 = 1_700_000_000
Row = dict[str, Any]
Transform = Callable[[httpx.Request, list[Row]], list[Row]]


def _iso(second: int) -> str:
    """The server's `_epoch_to_iso` (clamped to >= 0)."""
    return datetime.fromtimestamp(max(0, second), UTC).isoformat()


def _bound(value: str) -> str:
    """How the lib layer turns a request datetime into a storage bound."""
    return _iso(int(datetime.fromisoformat(value).timestamp()))


class FakeReflexio:
    """The three listing routes over in-memory tables; records every request."""

    def __init__(self) -> None:
        self.profiles: list[Row] = []
        self.user_playbooks: list[Row] = []
        self.agent_playbooks: list[Row] = []
        self.requests: list[httpx.Request] = []
        self.transform: Transform = lambda request, rows: rows

    def add_profiles(
        self,
        seconds: list[int],
        status: str | None = "archived",
        created: list[str] | None = None,
    ) -> set[str]:
        """Rows last modified at `seconds`; `created`: their created_at text (default: the
        same second)."""
        start = len(self.profiles)
        for n, second in enumerate(seconds, start):
            row = _profile(f"p{n}", second, status)
            row["created"] = created[n - start] if created else _iso(second)
            self.profiles.append(row)
        return {row["profile_id"] for row in self.profiles[start:]}

    def add_user_playbooks(self, seconds: list[int], status: str | None = None) -> set[int]:
        start = len(self.user_playbooks)
        for n, second in enumerate(seconds, start + 1):
            self.user_playbooks.append(_playbook("user_playbook_id", n, second, status))
        return {row["user_playbook_id"] for row in self.user_playbooks[start:]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/get_all_profiles":
            rows = self._profiles(dict(request.url.params))
            return _ok(user_profiles=self.transform(request, rows))
        body = json.loads(request.content)
        start, end = body.get("start_time"), body.get("end_time")
        if start is not None and end is not None and end <= start:
            return httpx.Response(422, json={"detail": "end_time must be after start_time"})
        if request.url.path == "/api/get_user_playbooks":
            rows = self._playbooks(self.user_playbooks, "user_playbook_id", body, live=True)
            return _ok(user_playbooks=self.transform(request, rows))
        rows = self._playbooks(self.agent_playbooks, "agent_playbook_id", body, live=False)
        return _ok(agent_playbooks=self.transform(request, rows))

    def _profiles(self, params: dict[str, str]) -> list[Row]:
        wanted = None if params.get("status_filter") == "current" else params["status_filter"]
        start, end = params.get("start_time"), params.get("end_time")
        if params.get("date_field") == "created_at":
            column, low, high = "created", _iso(int(start or 0)), _iso(int(end or 0))
        else:
            column, low, high = "last_modified_timestamp", int(start or 0), int(end or 0)
        rows = [
            row
            for row in self.profiles
            if row["status"] == wanted
            and (start is None or row[column] >= low)
            and (end is None or row[column] <= high)
        ]
        # ORDER BY last_modified_timestamp DESC: ties come in no promised order.
        rows.sort(
            key=lambda r: (-r["last_modified_timestamp"], zlib.crc32(r["profile_id"].encode()))
        )
        return [_view(row) for row in rows[: int(params.get("limit", 100))]]

    def _playbooks(
        self, table: list[Row], id_key: str, body: dict[str, Any], live: bool
    ) -> list[Row]:
        statuses = body.get("status_filter")
        start = _bound(body["start_time"]) if "start_time" in body else None
        end = _bound(body["end_time"]) if "end_time" in body else None
        rows = [
            row
            for row in table
            if (start is None or row["created_at_iso"] >= start)
            and (end is None or row["created_at_iso"] <= end)
            and _status_matches(row["status"], statuses, live)
        ]
        rows.sort(key=lambda r: (r["created_at_iso"], r[id_key]), reverse=True)
        return [_view(row) for row in rows[: body.get("limit", 100)]]


def _status_matches(status: str | None, statuses: list[str | None] | None, live: bool) -> bool:
    if statuses is not None:
        return status in statuses
    return status not in ("merged", "superseded") if live else status is None


def _profile(profile_id: str, second: int, status: str | None) -> Row:
    return {
        "profile_id": profile_id,
        "user_id": "u",
        "content": "c",
        "last_modified_timestamp": second,
        "generated_from_request_id": "r",
        "expiration_timestamp": 4102444800,
        "status": status,
    }


def _playbook(id_key: str, n: int, second: int, status: str | None) -> Row:
    row = {id_key: n, "agent_version": "v1", "request_id": "r", "content": "c"}
    return {**row, "status": status, "created_at_iso": _iso(second)}


def _view(row: Row) -> Row:
    """What the route sends: created_at as epoch seconds (playbooks; a profile's is not
    sent), None fields dropped."""
    hidden = ("created_at_iso", "created")
    out = {k: v for k, v in row.items() if v is not None and k not in hidden}
    if "created_at_iso" in row:
        out["created_at"] = int(datetime.fromisoformat(row["created_at_iso"]).timestamp())
    return out


def _ok(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, **fields})


@pytest.fixture
def fake() -> FakeReflexio:
    return FakeReflexio()


@pytest.fixture
def client(fake: FakeReflexio) -> ReflexioClient:
    return ReflexioClient(ReflexioSettings(), transport=httpx.MockTransport(fake))


def _profile_ids(client: ReflexioClient, page_size: int, **kwargs: Any) -> list[str]:
    pages = list(client.iter_profiles("archived", page_size=page_size, **kwargs))
    assert all(0 < len(page) <= page_size for page in pages)
    return [row.profile_id for page in pages for row in page]


def _assert_exactly(listed: list[Any], expected: set[Any]) -> None:
    assert len(listed) == len(set(listed)), "a row was yielded twice"
    assert set(listed) == expected


# --- complete listings ---------------------------------------------------------------------


def test_25000_rows_with_12000_in_one_second(fake: FakeReflexio, client: ReflexioClient) -> None:
    seconds = [T0] * 12_000 + [T0 - 1 - n // 7 for n in range(13_000)]
    expected = fake.add_profiles(seconds)
    fake.add_profiles([T0] * 50, status="pending")
    _assert_exactly(_profile_ids(client, 1_000), expected)


def test_expected_total_sizes_the_one_second_fetch(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    expected = fake.add_profiles([T0] * 12_000 + [T0 - 5] * 10)
    _assert_exactly(_profile_ids(client, 1_000, expected_total=12_010), expected)
    limits = [int(r.url.params["limit"]) for r in fake.requests]
    assert limits == [1_000, 12_011, 1_000, 1_000]  # page, boundary, short page, probe


# --- a second with more rows than one answer carries: split by created_at ----------------


def _created(n: int, spread_s: int, fraction: str = "") -> list[str]:
    """created_at texts of n rows spread one per `spread_s` seconds back from T0."""
    iso = [_iso(T0 - k * spread_s) for k in range(n)]
    return [text.replace("+00:00", f"{fraction}+00:00") for text in iso]


def _split_requests(fake: FakeReflexio) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.params.get("date_field") == "created_at"]


def _upgraded_second(
    fake: FakeReflexio, rows: int, fraction: str = "", spread_s: int = 600
) -> set[str]:
    """As after an upgrade: `rows` rows last modified in second T0, created `spread_s`
    apart (by default over months), plus older rows of other seconds."""
    created = _created(rows, spread_s, fraction)
    expected = fake.add_profiles([T0] * rows, created=created)
    return expected | fake.add_profiles([T0 - 1 - n for n in range(2_000)])


def test_a_second_larger_than_an_answer_is_read_by_created_at(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    expected = _upgraded_second(fake, 12_000)
    _assert_exactly(_profile_ids(client, 1_000, split_limit=3_000), expected)
    limits = [int(r.url.params["limit"]) for r in fake.requests]
    assert max(limits) == 3_000  # no answer was asked for more than it may carry
    assert len(_split_requests(fake)) > 4  # the second took several created_at windows


def test_a_counted_second_goes_to_created_at_windows_at_once(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    expected = _upgraded_second(fake, 12_000)
    listed = _profile_ids(client, 1_000, split_limit=3_000, expected_total=14_000)
    _assert_exactly(listed, expected)
    split = _split_requests(fake)
    one_second = [
        r for r in fake.requests if r.url.params.get("start_time") == str(T0) and r not in split
    ]
    assert split and one_second == []  # no one-second request that could not be carried


def test_created_at_with_fractions_at_the_window_edges_is_complete(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    """created_at text with microseconds sorts after its second's bound: windows share
    their edge second, so such a row is inside one of them."""
    expected = _upgraded_second(fake, 6_000, fraction=".500000", spread_s=1)
    _assert_exactly(_profile_ids(client, 1_000, split_limit=2_000), expected)


def test_rows_created_after_their_second_are_found(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    """Rows re-created from a backup keep an old last_modified and a new created_at."""
    later = [_iso(T0 + 7 * 86_400 + k) for k in range(3_000)]
    expected = _upgraded_second(fake, 3_000) | fake.add_profiles([T0] * 3_000, created=later)
    _assert_exactly(_profile_ids(client, 1_000, split_limit=2_000), expected)


@pytest.mark.timeout(60)
def test_two_crowded_created_seconds_side_by_side_end_the_walk_instead_of_looping(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    """Neighbouring windows share their edge second (for created_at values with fractions),
    so two crowded created_at seconds side by side fill every window that holds both: the
    walk cannot prove that pair complete and says so (it once asked for it forever); a pair
    that fits in one answer is read."""
    expected: set[str] = set()
    for back in (100, 101):
        expected |= fake.add_profiles([T0] * 1_200, created=[_iso(T0 - back)] * 1_200)
    with pytest.raises(IncompleteListing, match="cannot be proven complete"):
        _profile_ids(client, 1_000, split_limit=2_000)
    expected |= fake.add_profiles([T0] * 1_200, created=[_iso(T0 - 300)] * 1_200)
    _assert_exactly(_profile_ids(client, 1_000, split_limit=2_500), expected)
    assert _split_requests(fake)  # 3,600 rows in second T0: read in windows


def test_one_created_second_larger_than_an_answer_raises(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0] * 5_000)  # created in the same second as well
    with pytest.raises(IncompleteListing, match="cannot be proven complete"):
        _profile_ids(client, 1_000, split_limit=2_000)


def test_a_server_ignoring_the_created_at_window_raises(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    _upgraded_second(fake, 5_000)
    real = fake._profiles
    fake._profiles = lambda params: real({k: v for k, v in params.items() if k != "date_field"})
    with pytest.raises(IncompleteListing):
        _profile_ids(client, 1_000, split_limit=2_000)


def test_many_seconds_each_holding_more_than_a_page(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    expected = fake.add_profiles([T0 - n // 1_500 for n in range(30_000)])
    _assert_exactly(_profile_ids(client, 1_000), expected)


def test_seconds_spread_across_pages(fake: FakeReflexio, client: ReflexioClient) -> None:
    expected = fake.add_profiles([T0 - n // 3 for n in range(10_000)])
    _assert_exactly(_profile_ids(client, 500), expected)
    # no boundary fetch needed: one request per page, plus the probe below the last one
    assert len(fake.requests) <= 10_000 // (500 - 3) + 2


def test_empty_listing_is_one_request(fake: FakeReflexio, client: ReflexioClient) -> None:
    assert client.list_profiles("archived") == []
    assert len(fake.requests) == 1


@pytest.mark.parametrize("spread", [0, 1], ids=["one-second", "one-per-second"])
def test_exactly_page_size_rows(fake: FakeReflexio, client: ReflexioClient, spread: int) -> None:
    expected = fake.add_profiles([T0 - n * spread for n in range(100)])
    _assert_exactly(_profile_ids(client, 100), expected)


def test_rows_at_the_window_edges(fake: FakeReflexio, client: ReflexioClient) -> None:
    seconds = [0] * 150 + [-1] * 3 + [253_402_300_799] * 120 + [T0] * 5 + [1] * 99
    expected = fake.add_profiles(seconds)
    _assert_exactly(_profile_ids(client, 100), expected)


def test_filters_reach_every_request(fake: FakeReflexio, client: ReflexioClient) -> None:
    fake.add_profiles([T0] * 300)
    client.list_profiles("archived", user_id="u", source="chat")
    for request in fake.requests:
        assert request.url.params["user_id"] == "u"
        assert request.url.params["source"] == "chat"
        assert request.url.params["status_filter"] == "archived"


def test_user_playbooks_by_created_at_then_id(fake: FakeReflexio, client: ReflexioClient) -> None:
    seconds = [T0] * 2_000 + [T0 - 1 - n // 4 for n in range(3_000)] + [0] * 600
    expected = fake.add_user_playbooks(seconds) | fake.add_user_playbooks([T0] * 20, "pending")
    fake.add_user_playbooks([T0] * 30, status="merged")
    pages = list(client.iter_user_playbooks(page_size=500))
    _assert_exactly([row.user_playbook_id for page in pages for row in page], expected)
    current = {row.user_playbook_id for row in client.list_user_playbooks(status="current")}
    assert current == expected - {row["user_playbook_id"] for row in fake.user_playbooks[-50:]}


def test_one_second_of_playbooks_is_sent_as_half_a_second(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_user_playbooks([T0] * 700)
    list(client.iter_user_playbooks(page_size=500))
    boundary = json.loads(fake.requests[1].content)
    assert boundary["start_time"] == datetime.fromtimestamp(T0, UTC).isoformat()
    assert boundary["end_time"] == datetime.fromtimestamp(T0 + 0.5, UTC).isoformat()


def test_agent_playbooks_are_complete(fake: FakeReflexio, client: ReflexioClient) -> None:
    for n in range(1, 6_001):
        fake.agent_playbooks.append(_playbook("agent_playbook_id", n, T0 - n // 2_500, None))
    listed = [row.agent_playbook_id for row in client.list_agent_playbooks()]
    _assert_exactly(listed, set(range(1, 6_001)))


# --- what cannot be proven raises ----------------------------------------------------------


def test_answers_capped_below_the_page_size_raise(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0 - n for n in range(3_000)])
    fake.transform = lambda request, rows: rows[:100]
    with pytest.raises(IncompleteListing, match="cut below their limit"):
        client.list_profiles("archived")


def test_answers_capped_above_the_page_size_raise_with_expected_total(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0] * 5_000)
    fake.transform = lambda request, rows: rows[:2_000]
    with pytest.raises(IncompleteListing, match="fewer than the 5000 expected"):
        list(client.iter_profiles("archived", page_size=1_000, expected_total=5_000))


def test_unsorted_page_raises(fake: FakeReflexio, client: ReflexioClient) -> None:
    fake.add_profiles([T0 - n for n in range(50)])
    fake.transform = lambda request, rows: list(reversed(rows))
    with pytest.raises(IncompleteListing, match="not sorted newest first"):
        client.list_profiles("archived")


def test_playbook_ties_out_of_id_order_raise(fake: FakeReflexio, client: ReflexioClient) -> None:
    fake.add_user_playbooks([T0] * 10)
    fake.transform = lambda request, rows: sorted(rows, key=lambda r: r["user_playbook_id"])
    with pytest.raises(IncompleteListing, match="not sorted"):
        client.list_user_playbooks()


def test_row_outside_the_window_raises(fake: FakeReflexio, client: ReflexioClient) -> None:
    fake.add_profiles([T0] * 300 + [T0 - 1] * 10)

    def ignore_window(request: httpx.Request, rows: list[Row]) -> list[Row]:
        limit = int(request.url.params["limit"])
        return [
            _view(r) for r in sorted(fake.profiles, key=lambda r: -r["last_modified_timestamp"])
        ][:limit]

    fake.transform = ignore_window
    with pytest.raises(IncompleteListing, match="outside the window"):
        list(client.iter_profiles("archived", page_size=100))


def test_more_rows_than_the_limit_raise(fake: FakeReflexio, client: ReflexioClient) -> None:
    fake.add_profiles([T0 - n for n in range(10)])
    fake.transform = lambda request, rows: [*rows, _view(_profile("extra", T0 - 99, "archived"))]
    with pytest.raises(IncompleteListing, match="more than asked"):
        list(client.iter_profiles("archived", page_size=5))


def test_boundary_filling_the_hard_maximum_raises() -> None:
    rows = [{"id": n, "s": T0} for n in range(50)]
    ordering = Ordering[dict[str, int]](
        what="rows", id_of=lambda r: r["id"], second_of=lambda r: r["s"]
    )

    def fetch(window: Window, limit: int) -> list[dict[str, int]]:
        return rows[:limit]

    with pytest.raises(IncompleteListing, match="hard maximum"):
        list(iter_pages(fetch, ordering, page_size=10, max_limit=50))


def test_row_moving_between_requests_raises(fake: FakeReflexio, client: ReflexioClient) -> None:
    fake.add_profiles([T0] * 50 + [T0 - 1] * 80)

    def touch_after_first(request: httpx.Request, rows: list[Row]) -> list[Row]:
        if len(fake.requests) == 1:
            moved = next(r for r in fake.profiles if r["last_modified_timestamp"] == T0)
            moved["last_modified_timestamp"] = T0 - 1
        return rows

    fake.transform = touch_after_first
    with pytest.raises(IncompleteListing, match="came twice"):
        list(client.iter_profiles("archived", page_size=100))


def test_row_held_at_the_page_edge_vanishing_raises(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0] * 60 + [T0 - 1] * 60 + [T0 - 2] * 60)

    def delete_after_first(request: httpx.Request, rows: list[Row]) -> list[Row]:
        if len(fake.requests) == 1:
            edge = rows[-1]["profile_id"]  # held back: its second may go on past the page
            fake.profiles[:] = [r for r in fake.profiles if r["profile_id"] != edge]
        return rows

    fake.transform = delete_after_first
    with pytest.raises(IncompleteListing, match="gone from the next"):
        list(client.iter_profiles("archived", page_size=100))


def test_rate_limit_is_waited_out(fake: FakeReflexio) -> None:
    fake.add_profiles([T0 - n for n in range(30)])
    answers = iter([httpx.Response(429, json={"error": "Rate limit exceeded: 30 per 1 minute"})])
    sleeps: list[float] = []

    def limited(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    client = ReflexioClient(
        ReflexioSettings(), transport=httpx.MockTransport(limited), sleep=sleeps.append
    )
    assert len(client.list_profiles("archived")) == 30
    assert sleeps == [60.0]


def test_page_size_must_be_positive(client: ReflexioClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        list(client.iter_profiles("current", page_size=0))


# --- a walk a delta listing follows: a start second, changes tolerated ------------------


def _tolerant_ids(client: ReflexioClient, page_size: int, **kwargs: Any) -> list[str]:
    pages = client.iter_profiles("archived", page_size=page_size, tolerate_changes=True, **kwargs)
    return [row.profile_id for page in pages for row in page]


def test_start_bounds_every_request_and_lists_only_that_far(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    old = fake.add_profiles([T0 - 1_000 - n for n in range(300)])
    recent = fake.add_profiles([T0 - n // 3 for n in range(250)])
    listed = _tolerant_ids(client, 40, start=T0 - 40)
    _assert_exactly(listed, {f"p{300 + n}" for n in range(123)})  # seconds T0-40 .. T0
    assert set(listed) <= recent and not set(listed) & old
    assert all(int(r.url.params["start_time"]) == T0 - 40 for r in fake.requests)


def test_start_at_a_full_boundary_second_ends_the_walk_without_a_probe(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    expected = fake.add_profiles([T0] * 10 + [T0 - 5] * 100)
    fake.add_profiles([T0 - 6] * 10)
    _assert_exactly(_tolerant_ids(client, 50, start=T0 - 5), expected)
    assert all(int(r.url.params["end_time"]) >= T0 - 5 for r in fake.requests[1:])


def test_a_tolerant_walk_drops_a_held_row_that_vanished(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0] * 60 + [T0 - 1] * 60 + [T0 - 2] * 60)
    gone: list[str] = []

    def delete_after_first(request: httpx.Request, rows: list[Row]) -> list[Row]:
        if len(fake.requests) == 1:
            gone.append(rows[-1]["profile_id"])  # held back at the page edge, then deleted
            fake.profiles[:] = [r for r in fake.profiles if r["profile_id"] != gone[0]]
        return rows

    fake.transform = delete_after_first
    listed = _tolerant_ids(client, 100)
    _assert_exactly(listed, {r["profile_id"] for r in fake.profiles})
    assert gone[0] not in listed


def test_a_tolerant_walk_yields_a_row_again_in_its_later_version(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0] * 50 + [T0 - 1] * 80)
    moved: list[str] = []

    def touch_after_first(request: httpx.Request, rows: list[Row]) -> list[Row]:
        if len(fake.requests) == 1:
            row = next(r for r in fake.profiles if r["last_modified_timestamp"] == T0)
            row["last_modified_timestamp"] = T0 - 1
            moved.append(row["profile_id"])
        return rows

    fake.transform = touch_after_first
    pages = client.iter_profiles("archived", page_size=100, tolerate_changes=True)
    rows = [row for page in pages for row in page]
    versions = [r.last_modified_timestamp for r in rows if r.profile_id == moved[0]]
    assert versions == [T0, T0 - 1]  # the later version comes last
    assert {r.profile_id for r in rows} == {r["profile_id"] for r in fake.profiles}


def test_a_tolerant_walk_still_catches_answers_cut_below_their_limit(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    fake.add_profiles([T0 - n for n in range(3_000)])
    fake.transform = lambda request, rows: rows[:100]
    with pytest.raises(IncompleteListing, match="cut below their limit"):
        _tolerant_ids(client, 1_000)


def test_a_tolerant_walk_takes_expected_total_as_a_size_not_a_floor(
    fake: FakeReflexio, client: ReflexioClient
) -> None:
    expected = fake.add_profiles([T0] * 300)
    assert set(_tolerant_ids(client, 100, expected_total=400)) == expected


# --- the server's clock, where a pass's delta starts from ---------------------------------


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Tue, 14 Nov 2023 22:13:20 GMT", 1_700_000_000),  # behind this machine: the server's
        ("Fri, 01 Jan 2100 00:00:00 GMT", None),  # ahead: this machine's (the earlier)
        (None, None),  # none sent: this machine's
        ("not a date", None),
    ],
)
def test_server_second_is_the_earlier_of_the_two_clocks(date: str | None, expected: int | None):
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"date": date} if date else {}
        counts = {"current_count": 0, "pending_count": 0, "archived_count": 0}
        return httpx.Response(200, json={"success": True, **counts}, headers=headers)

    client = ReflexioClient(ReflexioSettings(), transport=httpx.MockTransport(answer))
    client.get_profile_statistics()
    before = int(time.time())
    second = client.server_second()
    assert second == expected if expected is not None else before <= second <= time.time()
