"""The stand-in's replies must be what the server accepts: ids echoed, schemas honoured."""

import json

from local_stack.stand_in_answers import answer, minimal_instance, without_turns

PROFILE_PROMPT = "[Interactions]\nuser: ```I am vegetarian.```\nassistant: ```Noted.```\n"
PLAYBOOK_PROMPT = "[T1] user: ```Short answers please.```\n[T2] assistant: ```OK.```"


def test_profiles_come_from_the_user_turns() -> None:
    reply = json.loads(answer("StructuredProfilesOutput", {}, PROFILE_PROMPT, "normal"))
    assert reply == {"profiles": [{"content": "I am vegetarian.", "time_to_live": "one_month"}]}


def test_styles_script_regressions() -> None:
    empty = json.loads(answer("StructuredProfilesOutput", {}, PROFILE_PROMPT, "empty"))
    dupes = json.loads(answer("StructuredProfilesOutput", {}, PROFILE_PROMPT, "duplicates"))
    junk = json.loads(answer("StructuredProfilesOutput", {}, PROFILE_PROMPT, "junk"))
    assert empty == {"profiles": []}
    assert len({p["content"] for p in dupes["profiles"]}) == 1 < len(dupes["profiles"])
    assert any("sorry" in p["content"] for p in junk["profiles"])


def test_deduplication_lists_every_new_id() -> None:
    prompt = "[NEW-0] Content: a\n[NEW-1] Content: b\n[NEW-0] again"
    reply = json.loads(answer("ProfileDeduplicationOutput", {}, prompt, "normal"))
    assert reply["unique_ids"] == ["NEW-0", "NEW-1"]


def test_playbooks_cite_a_turn_in_the_prompt() -> None:
    reply = json.loads(
        answer("StructuredReferencedExtractedPlaybookList", {}, PLAYBOOK_PROMPT, "normal")
    )
    assert reply["playbooks"][0]["evidence_refs"] == ["T1"]


def test_review_decides_every_candidate_with_its_evidence() -> None:
    prompt = "[C1]\n- [C1-E1] [T1] x\n[C2]\n- [C2-E1] [T2] y\n- [C2-E2] [T3] z"
    reply = json.loads(answer("PlaybookCandidateReviewOutput", {}, prompt, "normal"))
    assert [(d["id"], d["evidence_ids"]) for d in reply["decisions"]] == [
        ("C1", ["C1-E1"]),
        ("C2", ["C2-E1", "C2-E2"]),
    ]


def test_unknown_schema_gets_a_minimal_instance() -> None:
    schema = {
        "type": "object",
        "required": ["name", "items", "kind"],
        "properties": {
            "name": {"type": "string"},
            "items": {"type": "array"},
            "kind": {"$ref": "#/$defs/Kind"},
        },
        "$defs": {"Kind": {"enum": ["a", "b"]}},
    }
    assert minimal_instance(schema, schema) == {"name": "", "items": [], "kind": "a"}


def test_plain_prompts_get_true() -> None:
    assert answer(None, {}, "Output just a boolean value: true or false", "normal") == "true"


def test_profiles_already_stored_are_not_extracted_again() -> None:
    prompt = (
        "[Existing Profiles]\nalready stored (do NOT re-extract these):\n[I am vegetarian.]\n\n"
        "[User Interactions to Analyze]\nuser: ```I am vegetarian.```\nuser: ```I own a cat.```\n"
    )
    reply = json.loads(answer("StructuredProfilesOutput", {}, prompt, "normal"))
    assert [p["content"] for p in reply["profiles"]] == ["I own a cat."]


def test_forgotten_words_remove_only_the_user_turns_that_hold_them() -> None:
    prompt = PROFILE_PROMPT + "user: ```I have a dog called Pixel.```\n"

    kept = without_turns(prompt, ["VEGETARIAN"])

    reply = json.loads(answer("StructuredProfilesOutput", {}, kept, "normal"))
    assert [p["content"] for p in reply["profiles"]] == ["I have a dog called Pixel."]
    assert "assistant: ```Noted.```" in kept
    assert without_turns(prompt, []) == prompt


def test_consolidation_unifies_a_new_playbook_with_the_existing_one_of_its_trigger() -> None:
    row = '[{}-{}] Content: "{}" | Trigger: "{}" | Rationale: "stated" | Evidence Span: "x"'
    prompt = "\n".join(
        [
            row.format("NEW", 0, "Tailor to Alice", "user mentions Alice"),
            row.format("NEW", 1, "Tailor to Madrid", "user mentions Madrid"),
            row.format("EXISTING", 0, "Old wording", "user mentions Bob"),
            row.format("EXISTING", 1, "Tailor to Alice", "user mentions Alice"),
        ]
    )
    decisions = json.loads(answer("PlaybookConsolidationOutput", {}, prompt, "normal"))
    assert decisions["decisions"] == [
        {
            "kind": "unify",
            "new_id": "NEW-0",
            "archive_existing_ids": [1],
            "content": "Tailor to Alice",
            "trigger": "user mentions Alice",
            "rationale": "stated",
        },
        {"kind": "independent", "new_id": "NEW-1"},
    ]
