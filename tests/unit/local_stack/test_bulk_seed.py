"""The pure parts of the bulk seeder: spec validation, deterministic ids and timestamps, and
the server functions it reproduces (checked against values the real server wrote)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.bulk_seed import (
    ConversationSeed,
    ProfileSeed,
    SeededProfiles,
    SeededUserPlaybooks,
    SeedResult,
    UserPlaybookSeed,
    check_specs,
    main,
    row_timestamp,
    unicode_lexical_index,
    user_id,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be >= 0"),
        ({"users": 0}, "users must be >= 1"),
        ({"count": 10, "same_second": 11}, "same_second must be between 0 and count"),
        ({"same_second": -1}, "same_second must be between 0 and count"),
        ({"sources": ()}, "sources must be non-empty"),
        ({"sources": ("chat", "")}, "sources must be non-empty"),
        ({"status": "merged"}, "status must be one of"),
        ({"id_prefix": ""}, "id_prefix must not be empty"),
    ],
)
def test_bad_profile_specs_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {"status": "archived", "count": 10, "users": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        ProfileSeed(**spec)  # type: ignore[arg-type]


def test_bad_playbook_specs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="same_second must be between"):
        UserPlaybookSeed("v1", "pending", count=5, users=1, same_second=6)
    with pytest.raises(ValueError, match="agent_version and id_prefix"):
        UserPlaybookSeed("", "pending", count=5, users=1)


def test_bad_conversation_specs_say_what_is_wrong() -> None:
    rows = ProfileSeed("current", count=6, users=3)
    for users in (0, 4):
        with pytest.raises(ValueError, match="users must be between 1 and 3"):
            ConversationSeed(rows, users=users)
    with pytest.raises(ValueError, match="source and agent_version"):
        ConversationSeed(rows, users=1, source="")


def test_a_conversation_holds_its_users_rows_as_user_turns() -> None:
    rows = ProfileSeed("current", count=7, users=3, id_prefix="ci")
    talk = ConversationSeed(rows, users=2)
    assert talk.user_ids() == ["ci-user-000000", "ci-user-000001"]
    assert talk.request_id(1) == "ci-current-conversation-000001"
    # User 1 holds rows 1 and 4; each line names the user and its row number.
    assert [line.split()[0] for line in talk.lines(1)] == ["ci-user-000001"] * 2
    assert [" fact 1 " in talk.lines(1)[0], " fact 4 " in talk.lines(1)[1]] == [True, True]
    assert len(talk.lines(0)) == 3  # rows 0, 3, 6


def test_profile_ids_and_users_are_deterministic() -> None:
    spec = ProfileSeed("archived", count=5, users=2, id_prefix="ci")
    assert list(spec.ids()) == [f"ci-archived-{n:07d}" for n in range(5)]
    assert [spec.user_id(n) for n in range(3)] == [
        "ci-user-000000",
        "ci-user-000001",
        "ci-user-000000",
    ]
    assert ProfileSeed("current", count=1, users=2, id_prefix="ci").user_id(1) == user_id("ci", 1)


def test_same_second_rows_share_base_time_and_the_rest_step_back() -> None:
    assert [row_timestamp(100, 3, n) for n in range(6)] == [100, 100, 100, 99, 98, 97]
    assert [row_timestamp(100, 0, n) for n in range(3)] == [100, 99, 98]
    assert [row_timestamp(100, 1, n) for n in range(3)] == [100, 99, 98]


def test_specs_that_would_collide_are_refused() -> None:
    specs = [
        ProfileSeed("current", count=1, users=1),
        ProfileSeed("current", count=2, users=1),
    ]
    with pytest.raises(ValueError, match="same ids twice"):
        check_specs(specs)
    check_specs([*specs[:1], ProfileSeed("current", count=1, users=1, id_prefix="other")])
    check_specs([UserPlaybookSeed("v1", "current", 1, 1), UserPlaybookSeed("v2", "current", 1, 1)])


def test_result_regenerates_ids_per_status_and_agent_version() -> None:
    result = SeedResult(
        profiles=(SeededProfiles(ProfileSeed("archived", count=3, users=1, id_prefix="p")),),
        user_playbooks=(
            SeededUserPlaybooks(UserPlaybookSeed("v1", "pending", count=2, users=1), first_id=7),
            SeededUserPlaybooks(UserPlaybookSeed("v2", "pending", count=1, users=1), first_id=9),
        ),
        seconds=2.0,
    )
    assert result.profile_ids("archived") == {
        "p-archived-0000000",
        "p-archived-0000001",
        "p-archived-0000002",
    }
    assert result.profile_ids("current") == set()
    assert result.user_playbook_ids("v1", "pending") == {7, 8}
    assert result.user_playbook_ids("v2", "pending") == {9}
    assert (result.rows, result.rows_per_second) == (6, 3.0)


def test_unicode_index_matches_what_the_server_wrote() -> None:
    # Values copied from profiles_unicode_fts of a DB the real server (0.2.32) wrote.
    text = "I'm Alice, a data engineer in Berlin. I mostly write Python and SQL. "
    assert unicode_lexical_index(text) == (
        "i m alice a data engineer in berlin mostly write python and sql"
    )
    assert unicode_lexical_index("東京タワー 42") == "東 京 タ ワ ー 東京 京タ タワ ワー 42"
    assert unicode_lexical_index("\uff23af\u00e9") == "caf é"  # fullwidth C: NFKC
    assert unicode_lexical_index(None) == ""


def test_cli_reports_bad_input_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "reflexio_self-host-org.db"
    assert main(["--db", str(db), "--current", "5"]) == 2
    assert "no server DB" in capsys.readouterr().err
    db.touch()
    assert main(["--db", str(db), "--archived", "5", "--same-second", "6"]) == 2
    assert "same_second must be between 0 and count (5)" in capsys.readouterr().err
