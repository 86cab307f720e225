"""A criterion (or part of one) that needs a person: always unknown, with the study's review reason."""

from __future__ import annotations

from typing import Literal

from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import UNKNOWN

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads
from .publish import LOCAL, concept

MANUAL_REVIEW = (LOCAL, "manual-review", "Requires manual review")


class ManualClause(Clause):
    kind: Literal["manual"]


def evaluate(clause: ManualClause, ctx: Context, record: PatientRecord) -> Outcome:
    return Outcome(UNKNOWN, ctx.definition.manual_review_reason)


def reads(clause: ManualClause) -> Reads:
    return Reads()


def characteristic(clause: ManualClause, criteria: Definitions) -> Characteristic:
    text = f"{MANUAL_REVIEW[2]}: {clause.label}" if clause.label else MANUAL_REVIEW[2]
    return concept(MANUAL_REVIEW, text), {"valueBoolean": True}


KIND = Kind("manual", ManualClause, evaluate, reads, characteristic)
