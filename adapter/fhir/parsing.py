"""Reading FHIR JSON and checking it against the FHIR R4 model, with messages a sender can act on.

Shared by every edge that takes FHIR in (files, the ingestion service): each adds where the problem is
(a file and line, ``Bundle.entry[3]``) and how it answers (a one-line error, an OperationOutcome).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from adapter.errors import InputError

_MAX_NUMBER_DIGITS = 308  # beyond float range: FHIR values that large are broken data


class FhirJsonError(ValueError):
    """JSON that FHIR does not allow: NaN, Infinity, or a number out of range."""


class InvalidJson(InputError, ValueError):
    """Input that is not FHIR JSON; the message says why, without saying where (the caller knows)."""


def _no_constant(name: str) -> Any:
    raise FhirJsonError(f"{name} is not a number FHIR JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise FhirJsonError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_NUMBER_DIGITS:
        raise FhirJsonError(f"integer of {len(text)} digits is out of range")
    return int(text)


def loads_fhir_json(text: str | bytes) -> Any:
    """``json.loads`` for FHIR JSON: NaN, Infinity and out-of-range numbers raise ``FhirJsonError``."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)


def parse_fhir_json(data: str | bytes, *, positions: bool = True) -> Any:
    """FHIR JSON parsed, or ``InvalidJson`` naming the problem (with the line and column of a syntax
    error when ``positions``: a whole file or body; an NDJSON line is its own position)."""
    try:
        return loads_fhir_json(data)
    except UnicodeDecodeError:
        raise InvalidJson("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if positions else ""
        raise InvalidJson(f"invalid JSON{where}: {exc.msg}") from None
    except FhirJsonError as exc:  # NaN, Infinity, numbers out of range: not FHIR JSON
        raise InvalidJson(f"invalid FHIR JSON: {exc}") from None
    except RecursionError:
        raise InvalidJson("JSON nested too deeply") from None


@dataclass(frozen=True)
class ModelProblem:
    """The first thing a resource gets wrong against its FHIR R4 model."""

    resource_type: str
    path: str  # the element (``valueQuantity.value``); "" for the resource as a whole
    message: str
    unknown_type: bool = False
    too_deep: bool = False

    def __str__(self) -> str:
        if self.unknown_type or self.too_deep:
            return self.message
        if self.path:
            return f"{self.resource_type}.{self.path}: {self.message}"
        return f"{self.resource_type}: {self.message}"


@lru_cache(maxsize=256)  # bounded: a sender may name any number of unknown types
def model_class(resource_type: str) -> Any | None:
    """The R4B model class of a resource type, or None for a type FHIR R4 does not define."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None


def model_problem(resource: dict[str, Any], validate: bool = True) -> ModelProblem | None:
    """The first FHIR R4 structure problem of a resource (its ``resourceType`` a string); with
    ``validate`` False only whether the type is known."""
    from pydantic import ValidationError

    rtype = resource["resourceType"]
    model = model_class(rtype)
    if model is None:
        return ModelProblem(rtype, "", f"unknown resource type {rtype[:100]!r}", unknown_type=True)
    if not validate:
        return None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"] if p != "__root__")
        return ModelProblem(rtype, path, first["msg"])
    except RecursionError:
        return ModelProblem(rtype, "", f"{rtype}: nested too deeply", too_deep=True)
    return None


def fhir_problem(resource: dict[str, Any], validate: bool = True) -> str | None:
    """The first FHIR R4 structure problem of a resource (``Observation.status: Field required``)."""
    problem = model_problem(resource, validate)
    return str(problem) if problem else None


def references_in(value: Any) -> Iterator[str]:
    """Every ``reference`` string anywhere in a resource (iterative: deep nesting cannot overflow)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                yield ref
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def unresolved_urn(value: Any, full_urls: set[str] | frozenset[str]) -> str | None:
    """The first ``urn:uuid:``/``urn:oid:`` reference in ``value`` that names none of ``full_urls``."""
    for ref in references_in(value):
        if ref.startswith(("urn:uuid:", "urn:oid:")) and ref not in full_urls:
            return ref
    return None
