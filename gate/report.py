"""The gate report and its renderings: Markdown, JSON and JUnit XML."""

from __future__ import annotations

from typing import Any, Literal
from xml.etree import ElementTree as ET

import pandas as pd
from pydantic import BaseModel

from gate.checks import Check, Severity
from gate.policy import GatePolicy

_ORDER = {Severity.PASS: 0, Severity.WARN: 1, Severity.FAIL: 2}
_ICON = {Severity.PASS: "✅", Severity.WARN: "⚠️", Severity.FAIL: "❌"}
_MD_TRUNCATE = 120
_MD_USERS = 10
_MD_USER_COLUMNS = [
    "user_id",
    "baseline_rows",
    "candidate_rows",
    "retention",
    "volume_ratio",
    "candidate_duplicate_rows",
    "flagged_rows",
    "request_ids",
    "lost",
]


class Example(BaseModel):
    """A row worth looking at: lost, changed or duplicated, with its closest counterpart."""

    kind: Literal["lost", "changed", "duplicated"]
    user_id: str
    content: str
    other: str | None
    similarity: float


def worst(checks: list[Check]) -> Severity:
    """The worst severity among checks (pass when there are none)."""
    return max((c.severity for c in checks), key=_ORDER.__getitem__, default=Severity.PASS)


def _cut(text: str | None, limit: int = _MD_TRUNCATE) -> str:
    text = " ".join((text or "").split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GateReport(BaseModel):
    """Verdict, checks, per-user table and worst examples of one gate evaluation."""

    kind: Literal["profiles", "playbooks"]
    verdict: Severity
    candidate_rows: int
    baseline_rows: int
    checks: list[Check]
    per_user: list[dict[str, Any]]
    examples: list[Example]
    policy: GatePolicy

    def with_check(self, check: Check) -> GateReport:
        """This report with one more check (and the verdict it makes)."""
        found = [*self.checks, check]
        return self.model_copy(update={"checks": found, "verdict": worst(found)})

    def per_user_frame(self) -> pd.DataFrame:
        """The per-user table as a DataFrame (one row per user)."""
        return pd.DataFrame(self.per_user)

    @property
    def failed(self) -> list[Check]:
        """Checks that failed."""
        return [c for c in self.checks if c.severity is Severity.FAIL]

    def summary_sentence(self) -> str:
        """The verdict and its reasons in one sentence."""
        rows = f"{self.candidate_rows} candidate vs {self.baseline_rows} baseline {self.kind} rows"
        if self.verdict is Severity.PASS:
            return f"Gate passed: all {len(self.checks)} checks passed ({rows})."
        bad = [c for c in self.checks if c.severity is self.verdict]
        reasons = "; ".join(f"{c.name}: {c.message.rstrip('.')}" for c in bad)
        word = "failed" if self.verdict is Severity.FAIL else "passed with warnings"
        return f"Gate {word} ({rows}) because {reasons}."

    def to_json(self, indent: int | None = 2) -> str:
        """The whole report as JSON."""
        return self.model_dump_json(indent=indent)

    def to_markdown(self) -> str:
        """A readable Markdown summary for Prefect artifacts and CI step summaries."""
        lines = [
            f"## {_ICON[self.verdict]} Evaluation gate ({self.kind}): {self.verdict.value.upper()}",
            "",
            self.summary_sentence(),
            "",
            "| check | result | value | threshold | detail |",
            "|---|---|---|---|---|",
        ]
        for c in self.checks:
            threshold = "" if c.threshold is None else f"{c.threshold:g}"
            lines.append(
                f"| {c.name} | {_ICON[c.severity]} {c.severity.value} | {c.value:g} | "
                f"{threshold} | {_cut(c.message, 400)} |"
            )
        for kind in ("lost", "changed", "duplicated"):
            found = [e for e in self.examples if e.kind == kind]
            if found:
                lines += ["", f"**Worst {kind} rows**", ""]
                for e in found:
                    other = f" → `{_cut(e.other, 80)}`" if e.other else ""
                    lines.append(
                        f"- user `{_cut(e.user_id, 40)}` (similarity {e.similarity:.2f}): "
                        f"`{_cut(e.content, 80)}`{other}"
                    )
        table = self.per_user_frame()
        if not table.empty:
            table = table.sort_values(["lost", "retention"], ascending=[False, True])
            table = table[_MD_USER_COLUMNS]
            lines += ["", f"**Users with the lowest retention** (of {len(table)})", ""]
            lines += ["| " + " | ".join(table.columns) + " |", "|---" * len(table.columns) + "|"]
            for row in table.head(_MD_USERS).itertuples(index=False):
                cells = [f"{v:.2f}" if isinstance(v, float) else _cut(str(v), 40) for v in row]
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_junit_xml(self) -> str:
        """JUnit XML: one testcase per check, a failure element for each failed check."""
        suite = ET.Element(
            "testsuite",
            name=f"reflexio-gate-{self.kind}",
            tests=str(len(self.checks)),
            failures=str(len(self.failed)),
            errors="0",
            skipped="0",
        )
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"gate.{self.kind}", name=c.name)
            if c.severity is Severity.FAIL:
                failure = ET.SubElement(case, "failure", message=c.message, type="gate-fail")
                failure.text = f"value={c.value:g} threshold={c.threshold}"
            elif c.severity is Severity.WARN:
                ET.SubElement(case, "system-out").text = f"warning: {c.message}"
        return ET.tostring(
            ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True
        )
