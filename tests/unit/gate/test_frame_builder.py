"""FrameBuilder: pages added one by one give the frame of all rows at once."""

from __future__ import annotations

import pandas as pd
import pytest

from gate import FrameBuilder, frame_from_rows

PROFILES = [
    {
        "profile_id": f"p{i}",
        "user_id": None if i == 3 else f"u{i % 3}",
        "content": None if i == 4 else f"Fact number {i} about the user",
        "source": "chat",
        "generated_from_request_id": f"r{i % 2}",
        "status": "pending",
        "embedding": [0.1] * 8,
    }
    for i in range(7)
]
# Playbook rows whose id field changes between pages: user_playbook_id (an int) wins for
# every row once any row carries it; trigger appears only on the last page.
PLAYBOOKS = [
    {"id": "1", "user_id": "u1", "content": "Answer with short code samples", "source": "chat",
     "request_id": "q1"},
    {"id": "2", "user_id": "u2", "content": "Keep answers under five lines", "source": "chat",
     "request_id": "q1"},
    {"user_playbook_id": 3, "user_id": "u1", "content": "Cite the docs", "source": "email",
     "request_id": None},
    {"user_playbook_id": 4, "user_id": "u3", "content": "Use tables", "source": "email",
     "request_id": "q2", "trigger": "asks to compare"},
]  # fmt: skip


def built(kind, pages) -> pd.DataFrame:
    builder = FrameBuilder(kind)
    for page in pages:
        builder.add(iter(page))
    return builder.frame()


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_profile_pages_give_the_frame_of_all_rows(size):
    pages = [PROFILES[i : i + size] for i in range(0, len(PROFILES), size)]
    frame = built("profiles", pages)
    pd.testing.assert_frame_equal(frame, frame_from_rows(PROFILES, "profiles"))
    assert frame.loc[3, "user_id"] == "(no user)" and frame.loc[4, "content"] == ""
    assert frame.row_id.tolist() == [f"p{i}" for i in range(7)]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_playbook_pages_give_the_frame_of_all_rows(size):
    pages = [PLAYBOOKS[i : i + size] for i in range(0, len(PLAYBOOKS), size)]
    frame = built("playbooks", pages)
    pd.testing.assert_frame_equal(frame, frame_from_rows(PLAYBOOKS, "playbooks"))
    assert frame.row_id.tolist()[2:] == ["3", "4"]  # integer ids stay integers
    assert frame.trigger.isna().tolist() == [True, True, True, False]
    assert frame.request_id.isna().tolist() == [False, False, True, False]


def test_builder_keeps_only_the_gate_fields():
    builder = FrameBuilder("profiles")
    builder.add(PROFILES)
    assert set(builder._values) == {
        "profile_id",
        "user_id",
        "content",
        "source",
        "generated_from_request_id",
    }


def test_no_pages_or_empty_pages_give_an_empty_frame():
    assert built("profiles", []).empty and built("profiles", [[], []]).empty
    assert list(built("playbooks", [[]]).columns) == list(frame_from_rows([], "profiles").columns)


def test_missing_fields_are_named_after_all_pages():
    with pytest.raises(ValueError, match=r"missing field.*generated_from_request_id"):
        built("profiles", [[{k: v for k, v in r.items() if k != "generated_from_request_id"}]
                           for r in PROFILES])  # fmt: skip


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        FrameBuilder("agents")


def test_repeating_values_are_kept_once_and_the_builder_is_emptied():
    """A user's, a request's and a source's value is one object in the frame, not one per
    row (flat memory at size); the builder hands its lists over to the frame."""
    import json

    page = json.loads(json.dumps(PROFILES))  # every value its own object, as a listing gives
    builder = FrameBuilder("profiles")
    builder.add(page)
    frame = builder.frame()
    for column, first, second in (("user_id", 0, 3 * 2), ("request_id", 0, 2), ("source", 0, 1)):
        assert frame[column][first] == frame[column][second]
        assert frame[column][first] is frame[column][second], column
    assert not builder._values


def test_a_builder_makes_one_frame():
    """Its lists went to the first frame: a second frame, or a page added after, is refused
    rather than built from empty or misaligned columns."""
    builder = FrameBuilder("profiles")
    builder.add(PROFILES)
    assert len(builder.frame()) == len(PROFILES)
    with pytest.raises(RuntimeError, match="makes one"):
        builder.frame()
    with pytest.raises(RuntimeError, match="makes one"):
        builder.add(PROFILES)
