"""The run summary as a Prefect Markdown artifact (the summary itself: core/summary.py)."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from core.summary import RunSummary as Summary


class RunSummary(Summary):
    """A run summary that publishes itself as a Markdown artifact."""

    def publish(self, key: str) -> None:
        create_markdown_artifact(self.to_markdown(), key=key, description=self.decision[:200])
