"""The approval form's schema, as the Prefect server checks an answer before resuming."""

from __future__ import annotations

from typing import Any

import pytest
from prefect._internal.pydantic.v2_schema import create_v2_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from tasks.approval import ApprovalForm

FORM = ApprovalForm.with_initial_data(description="## Upgrade profiles?")
SCHEMA = create_v2_schema(FORM.__name__, model_base=FORM)
"""What pause_flow_run saves for the UI and the server (RunInput.save)."""


@pytest.mark.parametrize(
    "answer",
    [
        {"approve": True, "decided_by": "alice"},
        {"approve": True, "decided_by": "alice", "reason": "expected"},
        {"approve": False, "decided_by": "bob", "reason": "too short"},
    ],
)
def test_accepted_answers(answer: dict[str, Any]) -> None:
    validate(answer, SCHEMA, raise_on_error=True)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"approve": False, "decided_by": "bob"}, "'reason' is a required property"),
        ({"approve": False, "decided_by": "bob", "reason": "  "}, "does not match"),
        ({"decided_by": "bob"}, "'reason' is a required property"),  # approve defaults off
        ({"approve": True}, "'decided_by' is a required property"),
        ({"approve": True, "decided_by": " "}, "does not match"),
    ],
)
def test_refused_answers(answer: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        validate(answer, SCHEMA, raise_on_error=True)
