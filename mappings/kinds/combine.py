"""Combinations: ``all_of`` (Kleene AND) and ``any_of`` (Kleene OR) of clauses of any kind.

Their ``clauses`` field names the union of every registered kind, which only ``registry`` knows: it
completes these models (``model_rebuild``) once the union is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal

from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import Tri, all_of, any_of

from .base import Clause, Context, Kind, Outcome, Reads

if TYPE_CHECKING:
    from .registry import AnyClause


class _Combination(Clause):
    clauses: tuple[AnyClause, ...]

    def concept_names(self) -> Iterator[str]:
        for clause in self.clauses:
            yield from clause.concept_names()


class AllOf(_Combination):
    kind: Literal["all_of"] = "all_of"


class AnyOf(_Combination):
    kind: Literal["any_of"] = "any_of"


def _evaluator(
    combine: Callable[[Iterable[Tri]], Tri],
) -> Callable[[_Combination, Context, PatientRecord], Outcome]:
    def evaluate(clause: _Combination, ctx: Context, record: PatientRecord) -> Outcome:
        children = [ctx.evaluate(child, record) for child in clause.clauses]
        result = combine(c.result for c in children)
        labels = [child.label or child.kind for child in clause.clauses]
        reason = "; ".join(
            c.reason if c.reason.startswith(label) else f"{label}: {c.reason}"
            for label, c in zip(labels, children, strict=True)
        )
        evidence = tuple(dict.fromkeys(ref for c in children for ref in c.evidence))
        return Outcome(result, reason, evidence)

    return evaluate


def reads(clause: _Combination) -> Reads:
    """A combination reads nothing itself: its leaves do (``Criterion.leaves``)."""
    return Reads()


ALL_OF = Kind("all_of", AllOf, _evaluator(all_of), reads, None, combination=True)
ANY_OF = Kind("any_of", AnyOf, _evaluator(any_of), reads, None, combination=True)
