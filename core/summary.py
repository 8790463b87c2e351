"""The run summary: what happened, counts before and after, backup path, decision (the
Prefect artifact that shows it is tasks/report.py's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """Filled in as a regeneration goes; rendered as a Markdown artifact at the end."""

    title: str
    server: str
    decision: str = "not decided"
    counts_before: dict[str, int] | None = None
    counts_after: dict[str, int] | None = None
    backup_path: str | None = None
    gate: str | None = None
    approval: str | None = None
    """The operator's decision, who and why, when the run asked for approval."""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", "", f"**Decision:** {self.decision}", ""]
        lines.append(f"- server: `{self.server}`")
        if self.gate:
            lines.append(f"- gate: {self.gate}")
        if self.approval:
            lines.append(f"- approval: {self.approval}")
        lines.append(f"- backup: `{self.backup_path}`" if self.backup_path else "- backup: none")
        for key, value in self.extra.items():
            lines.append(f"- {key}: {value}")
        if self.counts_before or self.counts_after:
            before, after = self.counts_before or {}, self.counts_after or {}
            lines += ["", "| status | before | after |", "|---|---|---|"]
            for status in ("current", "pending", "archived"):
                lines.append(f"| {status} | {before.get(status, '')} | {after.get(status, '')} |")
        if self.notes:
            lines += ["", "**What happened**", ""] + [f"1. {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
