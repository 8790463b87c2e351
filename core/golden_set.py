"""The golden set: conversations with the facts (profiles) and rules (playbooks) each should
produce, in a versioned YAML file (docs/pipelines.md, *The golden set*; golden/sample.yaml).

    version: 1
    threshold: 0.5            # similarity an expected item needs (gate/golden.py)
    conversations:
      - user_id: golden-bob
        source: chat
        agent_version: v1
        messages:
          - {role: user, content: "I'm vegetarian."}
          - {role: assistant, content: "Noted."}
        profiles: ["The user is vegetarian"]
        playbooks:
          - {text: "Do not suggest meat dishes", threshold: 0.3}

A bad file raises GoldenSetError naming the file, the item and what to do; nothing is
published then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gate.golden import Expected, GoldenKind

VERSIONS = (1,)
"""File versions this release reads."""
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it: 10x faster on a large golden set."""


class GoldenSetError(ValueError):
    """The golden file is missing or invalid; the message says where and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    """One turn of a golden conversation."""

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class Item(_Strict):
    """An expected fact or rule; `threshold` overrides the file's default."""

    text: str = Field(min_length=1)
    threshold: float | None = Field(None, gt=0.0, le=1.0)


def _item(value: Any) -> Any:
    """A bare string is an item with the file's threshold."""
    return {"text": value} if isinstance(value, str) else value


class Conversation(_Strict):
    """One user's conversation as it is published, and what it should produce."""

    user_id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    agent_version: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    profiles: list[Item] = Field(default_factory=list)
    playbooks: list[Item] = Field(default_factory=list)

    @field_validator("profiles", "playbooks", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        return [_item(v) for v in value] if isinstance(value, list) else value

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[Message]) -> list[Message]:
        if not any(m.role == "user" for m in value):
            raise ValueError("needs at least one message with role 'user' to learn from")
        return value


class GoldenSet(_Strict):
    """A loaded golden file."""

    version: int
    threshold: float = Field(0.5, gt=0.0, le=1.0)
    conversations: list[Conversation] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in VERSIONS:
            known = ", ".join(map(str, VERSIONS))
            raise ValueError(
                f"version {value} is not one this release reads ({known}): write the file "
                "in a supported version or upgrade reflexio-pipelines"
            )
        return value

    def expected(self) -> list[Expected]:
        """Every expected item, in file order, with its threshold and place in the file."""
        out: list[Expected] = []
        for n, conversation in enumerate(self.conversations, start=1):
            for kind in ("profiles", "playbooks"):
                items: list[Item] = getattr(conversation, kind)
                for i, item in enumerate(items, start=1):
                    threshold = self.threshold if item.threshold is None else item.threshold
                    where = f"conversation {n} ({conversation.user_id}) {kind}[{i}]"
                    user = conversation.user_id
                    out.append(Expected(user, _kind(kind), item.text, threshold, where))
        return out

    @property
    def user_ids(self) -> list[str]:
        """The golden users, each once, in file order."""
        return list(dict.fromkeys(c.user_id for c in self.conversations))

    @property
    def agent_versions(self) -> list[str]:
        """The agent versions the conversations are published under, each once."""
        return list(dict.fromkeys(c.agent_version for c in self.conversations))


def _kind(name: str) -> GoldenKind:
    return "profiles" if name == "profiles" else "playbooks"


def _place(data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """A pydantic error location in the file's words: 'conversation 2 (bob), profiles[1]'."""
    if not loc:
        return "the file"
    if loc[0] != "conversations" or len(loc) < 2 or not isinstance(loc[1], int):
        return f"field '{'.'.join(map(str, loc))}'"
    index = loc[1]
    conversations = data.get("conversations")
    entry = conversations[index] if isinstance(conversations, list) else None
    user = entry.get("user_id") if isinstance(entry, dict) else None
    place = f"conversation {index + 1}" + (f" ({user})" if user else "")
    rest = [f"[{p + 1}]" if isinstance(p, int) else f".{p}" for p in loc[2:]]
    return place + (", " + "".join(rest).lstrip(".") if rest else "")


def load_golden_set(path: Path) -> GoldenSet:
    """Read and check a golden file; GoldenSetError names every problem and what to do."""
    if not path.is_file():
        raise GoldenSetError(
            f"Golden set {path} does not exist: pass the path of a golden YAML file "
            "(see golden/sample.yaml)."
        )
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise GoldenSetError(
            f"Golden set {path} is not valid YAML: {str(exc).splitlines()[0]}. Fix the file."
        ) from None
    if not isinstance(data, dict):
        raise GoldenSetError(
            f"Golden set {path} must be a mapping with version, threshold and conversations "
            f"(see golden/sample.yaml), not {type(data).__name__}."
        )
    if "version" not in data:
        raise GoldenSetError(
            f"Golden set {path} has no 'version:'; add 'version: 1' at the top (the format "
            "this release reads)."
        )
    try:
        golden = GoldenSet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_place(data, e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise GoldenSetError(f"Golden set {path} is invalid: {problems}. Fix the file.") from None
    if not golden.expected():
        raise GoldenSetError(
            f"Golden set {path} expects nothing: give at least one conversation a 'profiles' "
            "or 'playbooks' item (recall of nothing proves nothing)."
        )
    return golden
