"""A procedure on record (by code or category), optionally within a number of days."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import field_validator, model_validator

from mappings.clinical.dates import effective_day
from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import MET, UNKNOWN
from mappings.concepts import Result, patterns

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads, code_of, presence, ref
from .publish import SCT, concept, value_concept, with_qualifiers

PROCEDURE = (SCT, "71388002", "Procedure")
# "preparation" is a planned procedure: not yet received, so it cannot count as prior therapy or surgery.
_IGNORED_PROCEDURE = {"not-done", "entered-in-error", "preparation"}


class ProcedureClause(Clause):
    kind: Literal["procedure"]
    concepts: tuple[str, ...] = ()
    category: str | None = None
    within_days: int | None = None
    when_absent: Result = "not-met"
    # Regular expressions for names that suggest the procedure (e.g. "-ectomy" for surgery): such a
    # Procedure in the window without a recognised code makes the clause unknown (review), never met.
    text_signals: tuple[str, ...] = ()

    @field_validator("text_signals")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return patterns(value)

    @model_validator(mode="after")
    def _has_target(self) -> ProcedureClause:
        if not self.concepts and not self.category:
            raise ValueError("a procedure clause needs concepts or category")
        return self

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        if self.category:
            yield self.category


def evaluate(clause: ProcedureClause, ctx: Context, record: PatientRecord) -> Outcome:
    sets = [ctx.concepts[name] for name in clause.concepts]
    category = ctx.concepts[clause.category] if clause.category else None
    wording = ctx.wording(clause.text_signals)
    present, uncertain, worded = [], [], []
    for procedure in record.of_type("Procedure"):
        if procedure.get("status") in _IGNORED_PROCEDURE:
            continue
        by_code = any(s.matching_coding(code_of(procedure)) for s in sets)
        by_category = category is not None and category.matching_coding(procedure.get("category"))
        named = not (by_code or by_category) and wording.quote(procedure.get("code")) is not None
        if not (by_code or by_category or named):
            continue
        day = effective_day(procedure)
        if day is not None and day > ctx.as_of:
            continue
        in_window = clause.within_days is None or (
            day is not None and (ctx.as_of - day).days <= clause.within_days
        )
        if named:  # a name that suggests it, no code that says so: for review, never a match
            if in_window or day is None:
                worded.append(procedure)
        elif day is None and clause.within_days is not None:
            uncertain.append(procedure)
        elif in_window:
            present.append(procedure)
    outcome = presence(clause.label, clause.when_absent, present, uncertain)
    if outcome.result == MET or not worded:
        return outcome
    quoted = wording.quote(worded[0].get("code"))
    what = clause.label or "matching procedure"
    return Outcome(
        UNKNOWN,
        f'{what}: a procedure named "{quoted}" without a recognised code; needs review',
        (*outcome.evidence, *map(ref, worded)),
    )


def reads(clause: ProcedureClause) -> Reads:
    return Reads(
        resource_types=("Procedure",), text_signals=clause.text_signals, window_days=clause.within_days
    )


def characteristic(clause: ProcedureClause, criteria: Definitions) -> Characteristic:
    qualifiers = [f"within {clause.within_days} days"] if clause.within_days is not None else []
    code = concept(PROCEDURE, with_qualifiers("Procedure", clause, qualifiers))
    sets = [criteria.concept(n) for n in clause.concepts]
    targets = sets or ([criteria.concept(clause.category)] if clause.category else [])
    return code, {"valueCodeableConcept": value_concept(targets, criteria)}


KIND = Kind("procedure", ProcedureClause, evaluate, reads, characteristic)
