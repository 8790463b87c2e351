"""Evaluation gate: may a regenerated (PENDING) generation replace the CURRENT one?

Pure pandas + scikit-learn + pydantic; no Prefect, no HTTP.
"""

from gate.checks import Check, Severity
from gate.evaluate import evaluate, with_rerun_yield
from gate.frames import FrameBuilder, frame_from_rows, normalize_frame
from gate.policy import GatePolicy, GatePolicyError, GatePolicyOverrides
from gate.report import Example, GateReport

__all__ = [
    "Check",
    "Example",
    "FrameBuilder",
    "GatePolicy",
    "GatePolicyError",
    "GatePolicyOverrides",
    "GateReport",
    "Severity",
    "evaluate",
    "frame_from_rows",
    "normalize_frame",
    "with_rerun_yield",
]
