"""The per-kind adapter: which listings read a request's statuses, and how their rows are
stamped (profiles one status a listing; a playbook listing of every status keeps each
row's own status)."""

from __future__ import annotations

from collections.abc import Iterator

from core.kinds import PROFILES, STATUSES, user_playbooks
from core.sinks import ReadRequest
from reflexio_api import ReflexioSettings
from reflexio_api.models import Profile, UserPlaybook
from tasks.kind_calls import PlaybookCalls, ProfileCalls, calls_for
from tasks.ops import _pages


class Listings:
    """A client stand-in: records each listing asked for, answers one page: one row per
    status for a listing of every status, else one row that carries no status."""

    def __init__(self) -> None:
        self.settings = ReflexioSettings()
        self.asked: list[tuple[str, str | None]] = []

    def iter_profiles(self, status: str, **_: object) -> Iterator[list[Profile]]:
        self.asked.append(("profiles", status))
        row = Profile(
            profile_id=f"p-{status}",
            user_id="ann",
            content="likes tea",
            last_modified_timestamp=1,
            generated_from_request_id="r",
        )
        yield [row]

    def iter_user_playbooks(
        self, status: str | None, agent_version: str
    ) -> Iterator[list[UserPlaybook]]:
        self.asked.append((agent_version, status))
        statuses = (None, "pending", "archived") if status is None else (None,)
        yield [
            UserPlaybook(
                user_playbook_id=n,
                agent_version=agent_version,
                request_id="r",
                status=s,
                created_at=1,
            )
            for n, s in enumerate(statuses)
        ]


def pages(kind, statuses) -> tuple[list[tuple[str, str | None]], list[dict]]:
    client = Listings()
    rows = [
        row for page in _pages(client, kind, ReadRequest(statuses=statuses), None) for row in page
    ]  # type: ignore[arg-type]
    return client.asked, rows


def test_each_kind_gets_its_own_calls():
    settings = ReflexioSettings()
    assert calls_for(PROFILES, settings) == ProfileCalls(settings)
    assert calls_for(user_playbooks("v2"), settings) == PlaybookCalls(settings, "v2")


def test_profiles_are_listed_one_status_at_a_time_each_row_stamped_with_it():
    asked, rows = pages(PROFILES, STATUSES)
    assert asked == [("profiles", "current"), ("profiles", "pending"), ("profiles", "archived")]
    assert [(r["profile_id"], r["status"]) for r in rows] == [
        ("p-current", None),
        ("p-pending", "pending"),
        ("p-archived", "archived"),
    ]


def test_playbooks_of_every_status_are_one_listing_that_keeps_each_rows_status():
    asked, rows = pages(user_playbooks("v2"), STATUSES)
    assert asked == [("v2", None)]
    assert [r["status"] for r in rows] == [None, "pending", "archived"]


def test_playbooks_of_one_status_are_listed_and_stamped_with_it():
    asked, rows = pages(user_playbooks("v2"), ("archived",))
    assert asked == [("v2", "archived")]
    assert [r["status"] for r in rows] == ["archived"]
