"""Flat flow parameters: one parameter per field of a parameter model (flows/params.py).

`@flat_parameters(Model)` gives a flow body that takes the model a signature with one
keyword parameter per field, so the Prefect UI shows one form field each, `prefect deployment
run --param name=value` sets one, and a schedule's `parameters` set only what differs from
the deployment's (Prefect merges them by top-level name). The model stays the one place for
fields, defaults, descriptions and validation: each parameter's annotation is the field's
(constraints included), its default a `Field` carrying the field's default and description
(what `prefect.utilities.callables.parameter_schema` puts in the form), and the body receives
the model built from the parameters, so cross-field rules are checked before it starts.

Three kinds of field are told apart:
- required: no default; the schema marks it required and a run without it is refused;
- computed at run time (a `default_factory`, e.g. backup_dir from REFLEXIO_BACKUP_DIR on
  the worker): default null in the form, so that nothing of the deployer's environment is
  recorded in the deployment; null or absent leaves it to the model;
- hidden (`SkipJsonSchema`, e.g. ClearUsersParams.listed_before, which the run journal
  sets): a keyword parameter a Python caller may pass; the marker travels with the
  field's annotation, so Prefect leaves it out of the form and the schema.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from prefect.exceptions import ParameterTypeError
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def reason(exc: ValidationError) -> str:
    """A validation error, one clause per problem, without pydantic's echo of the input
    (a parameter may hold a config with credentials)."""
    problems = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        what = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)


def _runtime_default(field: FieldInfo) -> bool:
    return field.default_factory is not None


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    """The keyword parameter of one model field (see the module docstring)."""
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[annotation, *field.metadata]
    if field.is_required():
        default = Field(description=field.description)
    elif _runtime_default(field):
        annotation = annotation | None
        default = Field(None, description=field.description)
    else:
        default = Field(field.default, description=field.description)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def flat_signature(model: type[BaseModel], returns: Any) -> inspect.Signature:
    """One keyword parameter per field of `model`, required ones first (the form's order)."""
    fields = model.model_fields
    order = sorted(fields, key=lambda name: not fields[name].is_required())
    return inspect.Signature(
        [_parameter(name, fields[name]) for name in order], return_annotation=returns
    )


def build(model: type[M], values: Mapping[str, Any]) -> M:
    """The model from a flow's parameters: unset ones (Prefect passes a required
    parameter's empty default, and null for one computed at run time) are left to the
    model. ParameterTypeError, naming each bad field, when they do not validate."""
    fields = model.model_fields
    given = {
        name: value
        for name, value in values.items()
        if not isinstance(value, FieldInfo)
        and value is not PydanticUndefined
        and not (value is None and _runtime_default(fields[name]))
    }
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise ParameterTypeError(
            f"Flow run received invalid parameters: {reason(exc)}. Nothing was done."
        ) from None


def flat_parameters(
    model: type[M],
) -> Callable[[Callable[[M], R]], Callable[..., R]]:
    """Decorate a flow body that takes `model`: the result takes the model's fields as
    keyword parameters and calls the body with the validated model (module docstring)."""

    def decorate(body: Callable[[M], R]) -> Callable[..., R]:
        @functools.wraps(body)
        def flat(**values: Any) -> R:
            return body(build(model, values))

        flat.__signature__ = flat_signature(  # type: ignore[attr-defined]
            model, inspect.signature(body).return_annotation
        )
        return flat

    return decorate
