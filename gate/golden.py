"""Golden-set scoring: did a generation produce the facts and rules it should have?

Every expected item (a profile fact or a playbook rule of one user) is held against the
rows generated for that user and kind. It is *found* when the closest such row is at least
its threshold similar; *recall* is the share of expected items found. A generated row is
*expected* when it is at least the threshold similar to one of its user's expected items of
that kind; *precision* is the share of generated rows that are. Similarity is the gate's
text similarity (gate/textvec.py: TF-IDF of word 1-2-grams and character 4-grams with
scikit-learn's smoothed IDF, cosine). The IDF is fitted on the expected items alone, so a
generated row scores the same against a golden file whatever else the candidate generated;
every text is vectorised once, with one sparse product per block of users. Empty sides
count as perfect (nothing expected: recall 1; nothing generated: precision 1), so a
candidate that generates nothing fails on recall, not twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from gate.checks import Check, Severity
from gate.policy import GatePolicy
from gate.report import _cut
from gate.similarity import EPS, _best, _blocks
from gate.textvec import HashedTfidf

GoldenKind = Literal["profiles", "playbooks"]
BLOCK_ROWS = 500
"""Expected items per sparse product (whole users): bounds the product's size (500: 10,000
items score 4x faster than with 2,000)."""
MAX_LISTED = 50
"""Missed and unexpected items listed in the Markdown report, each (the rest are counted)."""


@dataclass(frozen=True)
class Expected:
    """One fact or rule a golden conversation should produce."""

    user_id: str
    kind: GoldenKind
    text: str
    threshold: float
    where: str
    """Where it is in the golden file ('conversation 2 (bob) profiles[1]'), for the report."""


@dataclass(frozen=True)
class Generated:
    """One row the candidate generated for a golden user."""

    user_id: str
    kind: GoldenKind
    text: str
    row_id: str


@dataclass(frozen=True)
class ItemResult:
    """An expected item with its closest generated row (None: the user has none)."""

    item: Expected
    similarity: float
    closest: Generated | None

    @property
    def found(self) -> bool:
        """At least its threshold similar to a generated row of its user and kind."""
        return self.closest is not None and self.similarity >= self.item.threshold - EPS


@dataclass(frozen=True)
class GoldenScore:
    """Recall and precision of one generation against a golden set, item by item."""

    items: list[ItemResult]
    unexpected: list[Generated]
    generated_rows: int

    @property
    def missed(self) -> list[ItemResult]:
        """Expected items no generated row matched, in file order."""
        return [r for r in self.items if not r.found]

    @property
    def recall(self) -> float:
        """Share of expected items found (1 when nothing is expected)."""
        return 1.0 - len(self.missed) / len(self.items) if self.items else 1.0

    @property
    def precision(self) -> float:
        """Share of generated rows that match an expected item (1 when none was generated)."""
        if not self.generated_rows:
            return 1.0
        return 1.0 - len(self.unexpected) / self.generated_rows

    def checks(self, policy: GatePolicy) -> list[Check]:
        """Recall and precision held to the policy's floors (golden_min_*)."""
        found = len(self.items) - len(self.missed)
        matched = self.generated_rows - len(self.unexpected)
        recall = (self.recall, policy.golden_min_recall, found, len(self.items))
        precision = (self.precision, policy.golden_min_precision, matched, self.generated_rows)
        return [
            _floor("golden recall", *recall, "expected items found"),
            _floor("golden precision", *precision, "generated rows expected"),
        ]

    def failed(self, policy: GatePolicy) -> bool:
        """Recall or precision below its floor."""
        return any(c.severity is Severity.FAIL for c in self.checks(policy))

    def markdown(self, policy: GatePolicy, intro: str = "") -> str:
        """The checks, every missed item (closest row beside it) and every unexpected row."""
        verdict = "FAIL" if self.failed(policy) else "PASS"
        lines = [f"## Golden set: {verdict}", "", *([intro, ""] if intro else [])]
        lines += [f"- {c.name}: {c.severity.value}: {c.message}" for c in self.checks(policy)]
        missed = self.missed
        lines += ["", f"### Missed expected items ({len(missed)})", ""]
        if missed:
            lines += ["| item | expected | threshold | best | closest generated |"]
            lines += ["|---|---|---|---|---|"]
            for r in missed[:MAX_LISTED]:
                closest = _cut(r.closest.text, 120) if r.closest else "(none generated)"
                lines.append(
                    f"| {_cut(r.item.where, 60)} | {_cut(r.item.text, 120)} "
                    f"| {r.item.threshold:g} | {r.similarity:.2f} | {closest} |"
                )
            lines += _more(len(missed))
        lines += ["", f"### Unexpected generated items ({len(self.unexpected)})", ""]
        if self.unexpected:
            lines += ["| user | kind | generated | id |", "|---|---|---|---|"]
            for g in self.unexpected[:MAX_LISTED]:
                lines.append(
                    f"| {_cut(g.user_id, 40)} | {g.kind} | {_cut(g.text, 160)} | "
                    f"{_cut(g.row_id, 40)} |"
                )
            lines += _more(len(self.unexpected))
        return "\n".join(lines) + "\n"


def _floor(name: str, value: float, floor: float, part: int, whole: int, what: str) -> Check:
    severity = Severity.FAIL if value < floor else Severity.PASS
    relation = "below" if severity is Severity.FAIL else "at or above"
    return Check(
        name=name,
        value=round(value, 4),
        threshold=floor,
        severity=severity,
        message=f"{part} of {whole} {what} ({value:.1%}), {relation} the floor of {floor:.0%}.",
    )


def _more(count: int) -> list[str]:
    return ["", f"... and {count - MAX_LISTED} more."] if count > MAX_LISTED else []


def score(expected: Sequence[Expected], generated: Sequence[Generated]) -> GoldenScore:
    """Match every expected item against the generated rows of its user and kind."""
    keys = [(e.user_id, e.kind) for e in expected] + [(g.user_id, g.kind) for g in generated]
    groups, _ = pd.factorize(pd.Series(keys, dtype=object))
    e_group, g_group = groups[: len(expected)], groups[len(expected) :]
    e_order = np.argsort(e_group, kind="stable")
    g_order = np.argsort(g_group, kind="stable")
    e_sorted, g_sorted = e_group[e_order], g_group[g_order]
    texts = [e.text for e in expected] + [g.text for g in generated]
    vectorizer = HashedTfidf()
    vectorizer.partial_fit([e.text for e in expected])
    vectors = vectorizer.transform(texts)
    e_vec = vectors[: len(expected)][e_order]
    g_vec = vectors[len(expected) :][g_order]
    thresholds = np.array([e.threshold for e in expected], dtype=np.float32)[e_order]
    best = np.zeros(len(expected), dtype=np.float32)
    closest = np.full(len(expected), -1, dtype=np.int64)
    matched = np.zeros(len(generated), dtype=bool)
    for start, stop in _blocks(e_sorted, BLOCK_ROWS):
        g_start = int(np.searchsorted(g_sorted, e_sorted[start], side="left"))
        g_stop = int(np.searchsorted(g_sorted, e_sorted[stop - 1], side="right"))
        product = (e_vec[start:stop] @ g_vec[g_start:g_stop].T).tocsr().tocoo()
        same = e_sorted[start + product.row] == g_sorted[g_start + product.col]
        rows, cols = product.row[same], product.col[same]
        vals = np.minimum(product.data[same], 1.0)
        b, m = _best(rows, cols, vals, stop - start)
        best[start:stop] = b
        closest[start:stop] = np.where(m >= 0, g_start + m, -1)
        matched[g_start + cols[vals >= thresholds[start + rows] - EPS]] = True
    results: list[ItemResult | None] = [None] * len(expected)
    for position, index in enumerate(e_order.tolist()):
        near = closest[position]
        row = generated[int(g_order[near])] if near >= 0 else None
        results[index] = ItemResult(expected[index], float(best[position]), row)
    unexpected = [generated[int(i)] for i in np.sort(g_order[~matched])]
    items = [r for r in results if r is not None]
    return GoldenScore(items=items, unexpected=unexpected, generated_rows=len(generated))
