"""Gate thresholds: cautious defaults, loadable from YAML, overridable per run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo


class GatePolicyError(ValueError):
    """An invalid policy file or override; the message names the field (and file)."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "policy"
        got = f" (got {item['input']!r})" if item["type"] != "missing" and item["loc"] else ""
        parts.append(f"field '{field}': {item['msg']}{got}")
    return "; ".join(parts)


class GatePolicy(BaseModel):
    """Thresholds of the evaluation gate; see docs/gate.md for each one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    similarity_threshold: float = Field(0.5, ge=0.0, le=1.0)
    duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0)
    max_lost_users: int = Field(0, ge=0)
    # A rerun whose provider silently failed part of the calls (H2) loses rows: losing more
    # than 25 % fails; a prompt change's normal variation (within 15 %) passes.
    volume_ratio_fail_min: float = Field(0.75, ge=0.0, le=1.0)
    # The same failure drops whole users (one extraction call per user): of the users the
    # rerun processed, fewer than 75 % with candidate rows fails, fewer than 90 % warns.
    user_yield_fail_min: float = Field(0.75, ge=0.0, le=1.0)
    user_yield_warn_min: float = Field(0.9, ge=0.0, le=1.0)
    volume_ratio_warn_min: float = Field(0.85, ge=0.0, le=1.0)
    volume_ratio_warn_max: float = Field(1.25, ge=1.0)
    volume_ratio_fail_max: float = Field(2.0, ge=1.0)
    user_volume_ratio_min: float = Field(0.25, ge=0.0, le=1.0)
    user_volume_ratio_max: float = Field(4.0, ge=1.0)
    user_volume_fail_share: float = Field(0.05, ge=0.0, le=1.0)
    retention_warn_min: float = Field(0.5, ge=0.0, le=1.0)
    retention_fail_min: float = Field(0.25, ge=0.0, le=1.0)
    novelty_warn_max: float = Field(0.75, ge=0.0, le=1.0)
    novelty_fail_max: float = Field(1.0, ge=0.0, le=1.0)
    duplicate_warn_increase: float = Field(0.05, ge=0.0, le=1.0)
    duplicate_fail_increase: float = Field(0.15, ge=0.0, le=1.0)
    min_chars: int = Field(10, ge=0)
    max_chars: int = Field(2000, ge=1)
    hygiene_fail_share: float = Field(0.02, ge=0.0, le=1.0)
    max_stale_users: int = Field(0, ge=0)
    max_examples: int = Field(5, ge=0, le=100)
    # The prompt check's golden set (gate/golden.py): below these floors the candidate fails.
    golden_min_recall: float = Field(0.9, ge=0.0, le=1.0)
    golden_min_precision: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        pairs = [
            ("volume_ratio_fail_min", "volume_ratio_warn_min"),
            ("user_yield_fail_min", "user_yield_warn_min"),
            ("volume_ratio_warn_max", "volume_ratio_fail_max"),
            ("retention_fail_min", "retention_warn_min"),
            ("novelty_warn_max", "novelty_fail_max"),
            ("duplicate_warn_increase", "duplicate_fail_increase"),
            ("min_chars", "max_chars"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})"
                )
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> GatePolicy:
        """Load a policy from a YAML mapping of field: value; unset fields keep defaults."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise GatePolicyError(f"cannot read gate policy {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise GatePolicyError(
                f"invalid gate policy in {path}: expected a mapping of field: value, "
                f"got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise GatePolicyError(f"invalid gate policy in {path}: {_describe(exc)}") from None

    def with_overrides(self, overrides: GatePolicyOverrides | dict[str, Any] | None) -> GatePolicy:
        """Return a copy with `overrides` applied, validated like the defaults."""
        if isinstance(overrides, BaseModel):
            overrides = overrides.model_dump()
        if not overrides:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            raise GatePolicyError(f"invalid gate policy override: {_describe(exc)}") from None


class _Overrides(BaseModel):
    """What GatePolicyOverrides adds to the thresholds: unknown names refused by name,
    the defaults with the overrides applied validated as a whole (warn before fail), and
    only the thresholds given kept when dumped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(GatePolicy.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown gate threshold(s) {', '.join(unknown)}; the thresholds are "
                    f"{', '.join(GatePolicy.model_fields)} (docs/gate.md)"
                )
        return data

    @model_validator(mode="after")
    def _applies(self) -> Self:
        GatePolicy().with_overrides(self)
        return self

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


def _constrained(field: FieldInfo) -> Any:
    """A field's type with its bounds (Annotated needs at least one of them)."""
    return Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation


GatePolicyOverrides = create_model(
    "GatePolicyOverrides",
    __base__=_Overrides,
    __doc__="Some of the gate's thresholds, each typed and bounded as in GatePolicy; a "
    "threshold left empty keeps its default (or the policy it is applied to).",
    **{name: (_constrained(field) | None, None) for name, field in GatePolicy.model_fields.items()},
)
"""A form of the gate's thresholds: every GatePolicy field, optional; the flows apply it to
the default policy."""
