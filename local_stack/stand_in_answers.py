"""What the stand-in LLM answers, per structured-output schema the Reflexio server asks for.

Each answer is built from the prompt so the server accepts it: profile deduplication lists
every ``[NEW-n]`` id, playbook extraction cites turn ids present in the prompt, candidate
review decides every ``[C#]`` candidate with its ``[C#-E#]`` evidence ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

OutputStyle = Literal["normal", "empty", "duplicates", "junk", "reworded"]

_INTERACTIONS_MARKER = "[User Interactions to Analyze]"
_NEW_IDS = re.compile(r"\[(NEW-\d+)\]")
_CANDIDATE_IDS = re.compile(r"\[(C\d+)\]")
_EVIDENCE_IDS = re.compile(r"\[(C\d+-E\d+)\]")
_CONSOLIDATION_ROW = re.compile(
    r'\[(NEW|EXISTING)-(\d+)\] Content: "(.*?)" \| Trigger: "(.*?)" \| Rationale: "(.*?)" \|'
)
"""A playbook row of the consolidation prompt (the server renders NEW and EXISTING alike)."""
# The server renders each turn as "user: ```text```" ("[T1] user: ..." in playbook prompts).
_USER_TURN = re.compile(r"^\s*(\[T\d+\]\s*)?user: ```(.*?)```\s*$", re.MULTILINE)


def answer(schema_name: str | None, schema: dict[str, Any], prompt: str, style: str) -> str:
    """The reply text for one chat call."""
    _log_prompt(schema_name, prompt)
    builder = _BUILDERS.get(schema_name or "")
    if builder is not None:
        return json.dumps(builder(prompt, style))
    if schema:
        return json.dumps(minimal_instance(schema, schema))
    return "true"


def without_turns(prompt: str, words: Iterable[str]) -> str:
    """The prompt without the user turns that contain any of `words` (any case)."""
    lowered = [w.lower() for w in words]

    def keep(turn: re.Match[str]) -> str:
        return "" if any(w in turn.group(2).lower() for w in lowered) else turn.group(0)

    return _USER_TURN.sub(keep, prompt)


def in_error_share(prompt: str, fraction: float) -> bool:
    """Whether this call is among the ``fraction`` of calls that fail: those about a
    conversation chosen by ``conversation_fails`` (the whole prompt counts as one when it
    has no user turns)."""
    turns = [text for _, text in _USER_TURN.findall(prompt)]
    return conversation_fails(turns or [prompt], fraction)


def conversation_fails(user_turns: Iterable[str], fraction: float) -> bool:
    """Whether calls about a conversation with these user turns fail. Chosen by a hash of
    the turns in any order, so every call about one user's conversation (however the server
    orders the turns) is chosen alike, and a larger fraction only adds conversations."""
    if fraction >= 1:
        return True
    key = "\n".join(sorted(turn.strip() for turn in user_turns))
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def _profiles(prompt: str, style: str) -> dict[str, Any]:
    existing, _, interactions = prompt.partition(_INTERACTIONS_MARKER)
    if not interactions:
        existing, interactions = "", prompt
    facts = _user_facts(interactions)
    if style == "reworded":
        facts = [f"The user has said: {fact}" for fact in facts]
    # Like a real model: what the prompt lists as already stored is not extracted again.
    facts = [f for f in facts if f not in existing]
    if style == "empty" or not facts:
        return {"profiles": []}
    if style == "junk":
        return {
            "profiles": [
                {
                    "content": "I'm sorry, but I can't help with that request.",
                    "time_to_live": "one_month",
                },
                {"content": "", "time_to_live": "one_month"},
            ]
        }
    if style == "duplicates":
        facts = [facts[0]] * 4
    return {"profiles": [{"content": fact, "time_to_live": "one_month"} for fact in facts]}


def _deduplication(prompt: str, style: str) -> dict[str, Any]:
    return {
        "duplicate_groups": [],
        "unique_ids": _unique(_NEW_IDS.findall(prompt)),
        "deletions": [],
    }


def _playbooks(prompt: str, style: str) -> dict[str, Any]:
    turn = _first_user_turn(prompt)
    facts = _user_facts(prompt)
    if turn is None or not facts or style == "empty":
        return {"playbooks": []}
    fact = facts[0]
    if style == "reworded":
        fact = f"the user said {fact}"
    return {
        "playbooks": [
            {
                "content": f"When the user mentions '{fact[:60]}', tailor the answer to it.",
                "trigger": f"user mentions {fact[:40]}",
                "rationale": "The user stated this preference directly in the conversation.",
                "evidence_kind": "correction",
                "evidence_refs": [turn],
            }
        ]
    }


def _review(prompt: str, style: str) -> dict[str, Any]:
    evidence = _EVIDENCE_IDS.findall(prompt)
    decisions = []
    for candidate in _unique(_CANDIDATE_IDS.findall(prompt)):
        own = _unique([e for e in evidence if e.startswith(f"{candidate}-")])
        decisions.append(
            {
                "id": candidate,
                "decision": "accept",
                "reason_code": "grounded_useful",
                "evidence_ids": own,
            }
        )
    return {"decisions": decisions}


def _aggregation(prompt: str, style: str) -> dict[str, Any]:
    return {
        "playbook": {
            "content": "Tailor answers to the preferences users state in the conversation.",
            "trigger": "when a user states a preference",
        }
    }


def _consolidation(prompt: str, style: str) -> dict[str, Any]:
    """Each NEW playbook unifies with the EXISTING one of the same trigger and absorbs it,
    as a model does with a repeated lesson (the server's validator refuses "independent"
    for one that overlaps an existing row); every other NEW one is independent. The
    server asks only when its deterministic merge could not decide, e.g. an existing row
    re-created without the `reader_angle` listings omit (H20)."""
    rows = {(kind, n): fields for kind, n, *fields in _CONSOLIDATION_ROW.findall(prompt)}
    existing = {trigger: n for (kind, n), (_, trigger, _) in rows.items() if kind == "EXISTING"}
    decisions: list[dict[str, Any]] = []
    for new_id in _unique(_NEW_IDS.findall(prompt)):
        content, trigger, rationale = rows.get(("NEW", new_id[4:]), ("", "", ""))
        if trigger and trigger in existing:
            decisions.append(
                {
                    "kind": "unify",
                    "new_id": new_id,
                    "archive_existing_ids": [int(existing.pop(trigger))],
                    "content": content,
                    "trigger": trigger,
                    "rationale": rationale,
                }
            )
        else:
            decisions.append({"kind": "independent", "new_id": new_id})
    return {"decisions": decisions}


_BUILDERS = {
    "StructuredProfilesOutput": _profiles,
    "ProfileDeduplicationOutput": _deduplication,
    "StructuredReferencedExtractedPlaybookList": _playbooks,
    "PlaybookCandidateReviewOutput": _review,
    "PlaybookAggregationOutput": _aggregation,
    "PlaybookConsolidationOutput": _consolidation,
    "AgentSuccessEvaluationOutput": lambda prompt, style: {
        "is_success": True,
        "is_escalated": False,
        "number_of_correction_per_session": 0,
    },
    "TagsOutput": lambda prompt, style: {"tags": ["preference"]},
    "ReformulationResult": lambda prompt, style: {"standalone_query": prompt[-200:]},
}


def _user_facts(prompt: str) -> list[str]:
    facts = [text.strip() for _, text in _USER_TURN.findall(prompt)]
    return _unique([f for f in facts if f])[:5]


def _first_user_turn(prompt: str) -> str | None:
    for turn, _ in _USER_TURN.findall(prompt):
        if turn:
            return turn.strip()[1:-1]
    return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def minimal_instance(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """The smallest value a JSON schema accepts (objects get their required keys)."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return minimal_instance(target, root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            return minimal_instance(node[key][0], root)
    if "enum" in node:
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = node.get("properties", {})
        return {name: minimal_instance(props[name], root) for name in node.get("required", [])}
    return {"array": [], "string": "", "integer": 0, "number": 0, "boolean": True}.get(kind)


def _log_prompt(schema_name: str | None, prompt: str) -> None:
    folder = os.environ.get("STAND_IN_PROMPT_LOG")
    if folder:
        path = Path(folder) / f"{schema_name or 'text'}.txt"
        with path.open("a") as handle:
            handle.write(prompt + "\n\n=====\n\n")
