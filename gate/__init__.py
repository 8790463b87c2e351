"""Evaluation gate: may a regenerated (PENDING) generation replace the CURRENT one?

Pure pandas + scikit-learn + pydantic; no Prefect, no HTTP.
"""

from gate.checks import Check, Severity
from gate.evaluate import evaluate
from gate.frames import FrameBuilder, frame_from_rows, normalize_frame
from gate.policy import GatePolicy, GatePolicyError
from gate.report import Example, GateReport
from gate.scope import RunScope, with_scope

__all__ = [
    "Check",
    "Example",
    "FrameBuilder",
    "GatePolicy",
    "GatePolicyError",
    "GateReport",
    "RunScope",
    "Severity",
    "evaluate",
    "frame_from_rows",
    "normalize_frame",
    "with_scope",
]
