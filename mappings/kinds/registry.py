"""The one list of criterion kinds. The criteria schema (``mappings.criteria``), the screening engine
and the published Group all look kinds up here; a new kind is a module and a line in ``KINDS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import Field

from . import (
    age,
    alive,
    combine,
    condition,
    diagnosis,
    immunization,
    manual,
    medication,
    observation,
    procedure,
)
from .base import Clause, Kind

# In the order the schema lists them (a validation error names the first kinds first).
KINDS: tuple[Kind, ...] = (
    age.KIND,
    alive.KIND,
    diagnosis.KIND,
    condition.KIND,
    observation.KIND,
    medication.KIND,
    procedure.KIND,
    immunization.KIND,
    manual.KIND,
    combine.ALL_OF,
    combine.ANY_OF,
)
_BY_NAME = {kind.name: kind for kind in KINDS}
# YAML writes a combination as ``{all_of: [...]}``: the keys that are combinations.
COMBINATIONS = tuple(kind.name for kind in KINDS if kind.combination)
# Models with a field naming the union of every kind, rebuilt when a kind is added (``register``).
_rebuilders: list[Callable[[Any], None]] = []


def kinds() -> tuple[Kind, ...]:
    """Every kind, the shipped ones first, then those added with ``register``."""
    return tuple(_BY_NAME.values())


def kind_of(clause: Clause | str) -> Kind:
    """The kind of a clause (or of a kind name)."""
    name = clause if isinstance(clause, str) else clause.kind
    return _BY_NAME[name]


def clause_union(kinds: tuple[Kind, ...] = KINDS) -> Any:
    """The discriminated union of the kinds' schemas (a criterion's ``rule``)."""
    union: Any = kinds[0].schema
    for kind in kinds[1:]:
        union = union | kind.schema
    return Annotated[union, Field(discriminator="kind")]


def on_union_change(rebuild: Callable[[Any], None]) -> None:
    """``rebuild(union)`` is called when a kind is registered (``mappings.criteria`` uses it)."""
    _rebuilders.append(rebuild)


def register(kind: Kind) -> None:
    """Add a kind defined outside this package (a plug-in, a test): the schemas that name every kind
    are rebuilt, so criteria files can use it; the engine and the Group find it by name."""
    if kind.name in _BY_NAME:
        raise ValueError(f"a kind named {kind.name!r} is already registered")
    _BY_NAME[kind.name] = kind
    _use(clause_union(kinds()))


def unregister(name: str) -> None:
    """Remove a kind added with ``register`` (the shipped kinds stay)."""
    if any(kind.name == name for kind in KINDS):
        raise ValueError(f"{name!r} is a shipped kind")
    del _BY_NAME[name]
    _use(clause_union(kinds()))


def _use(union: Any) -> None:
    for model in (combine.AllOf, combine.AnyOf):
        model.model_fields["clauses"].annotation = tuple[union, ...]
        model.model_rebuild(force=True)
    for rebuild in _rebuilders:
        rebuild(union)


if TYPE_CHECKING:
    AnyClause: TypeAlias = Clause
else:
    AnyClause = clause_union()
combine.AllOf.model_rebuild(_types_namespace={"AnyClause": AnyClause})
combine.AnyOf.model_rebuild(_types_namespace={"AnyClause": AnyClause})
