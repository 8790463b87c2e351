"""The golden file: the sample loads, and every bad file is refused with the file, the item,
what is wrong and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.golden_set import GoldenSetError, load_golden_set

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
version: 1
threshold: 0.4
conversations:
  - user_id: bob
    source: chat
    agent_version: v1
    messages:
      - {role: user, content: "I'm vegetarian."}
    profiles:
      - The user is vegetarian
      - {text: The user cooks, threshold: 0.7}
    playbooks: [Suggest vegetarian dishes]
  - user_id: quiet
    source: email
    agent_version: v2
    messages: [{role: user, content: "Thanks, bye."}]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "golden.yaml"
    path.write_text(text)
    return path


def test_a_good_file_gives_every_item_with_its_threshold_and_place(tmp_path: Path) -> None:
    golden = load_golden_set(_write(tmp_path, GOOD))

    items = [(e.user_id, e.kind, e.text, e.threshold, e.where) for e in golden.expected()]
    assert items == [
        ("bob", "profiles", "The user is vegetarian", 0.4, "conversation 1 (bob) profiles[1]"),
        ("bob", "profiles", "The user cooks", 0.7, "conversation 1 (bob) profiles[2]"),
        ("bob", "playbooks", "Suggest vegetarian dishes", 0.4, "conversation 1 (bob) playbooks[1]"),
    ]
    assert golden.user_ids == ["bob", "quiet"]
    assert golden.agent_versions == ["v1", "v2"]


def test_the_sample_in_the_repository_loads() -> None:
    golden = load_golden_set(ROOT / "golden" / "sample.yaml")
    assert len(golden.expected()) >= 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "does not exist: pass the path of a golden YAML file"),
        ("version: [1\n", "is not valid YAML"),
        ("- a list\n", "must be a mapping with version, threshold and conversations"),
        (GOOD.replace("version: 1\n", ""), "has no 'version:'; add 'version: 1'"),
        (
            GOOD.replace("version: 1", "version: 7"),
            "version 7 is not one this release reads (1): write the file in a supported",
        ),
        (
            GOOD.replace("threshold: 0.7", "threshold: 1.5"),
            "conversation 1 (bob), profiles[2].threshold: Input should be less than or equal to 1",
        ),
        (
            GOOD.replace('{role: user, content: "Thanks, bye."}', "{role: assistant, content: Hi}"),
            "conversation 2 (quiet), messages: needs at least one message with role 'user'",
        ),
        (GOOD.replace("source: email", "sourse: email"), "conversation 2 (quiet), source: Field"),
        (
            GOOD.replace('role: user, content: "I\'m vegetarian."', "role: robot, content: x"),
            "conversation 1 (bob), messages[1].role: Input should be 'user' or 'assistant'",
        ),
        ("version: 1\nconversations: []\n", "field 'conversations': List should have at least 1"),
        (
            GOOD.split("    profiles:")[0],
            "expects nothing: give at least one conversation a 'profiles' or 'playbooks' item",
        ),
    ],
)
def test_bad_files_are_refused_naming_file_item_and_fix(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "golden.yaml" if text is None else _write(tmp_path, text)

    with pytest.raises(GoldenSetError) as raised:
        load_golden_set(path)

    message = str(raised.value)
    assert str(path) in message
    assert expected in message
    assert "input_value" not in message and "Traceback" not in message
