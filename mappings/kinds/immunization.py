"""A vaccination within a window of days before the as-of date (any vaccine counts)."""

from __future__ import annotations

from typing import Literal

from mappings.clinical.dates import day_of
from mappings.clinical.record import PatientRecord
from mappings.concepts import Result

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads, presence
from .publish import SCT, concept, with_qualifiers

VACCINATION = (SCT, "33879002", "Administration of vaccine to produce active immunity")


class ImmunizationClause(Clause):
    kind: Literal["immunization"]
    within_days: int
    when_absent: Result = "not-met"


def evaluate(clause: ImmunizationClause, ctx: Context, record: PatientRecord) -> Outcome:
    present, uncertain = [], []
    for immunization in record.of_type("Immunization"):
        if immunization.get("status") in ("not-done", "entered-in-error"):
            continue
        day = day_of(immunization.get("occurrenceDateTime"))
        if day is None:
            uncertain.append(immunization)
        elif day <= ctx.as_of and (ctx.as_of - day).days <= clause.within_days:
            present.append(immunization)
    return presence(clause.label, clause.when_absent, present, uncertain)


def reads(clause: ImmunizationClause) -> Reads:
    return Reads(resource_types=("Immunization",), window_days=clause.within_days)


def characteristic(clause: ImmunizationClause, criteria: Definitions) -> Characteristic:
    qualifiers = [f"within {clause.within_days} days"]
    return concept(VACCINATION, with_qualifiers("Vaccination", clause, qualifiers)), {"valueBoolean": True}


KIND = Kind("immunization", ImmunizationClause, evaluate, reads, characteristic)
