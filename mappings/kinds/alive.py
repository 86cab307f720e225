"""Alive on the as-of date: no death recorded on or before it."""

from __future__ import annotations

from typing import Literal

from mappings.clinical.dates import day_of
from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import MET, NOT_MET

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads
from .publish import SCT, concept

# 'Alive' is expressed as "Dead = false" with exclude=false, so an inclusion criterion keeps exclude=false
# (exclude mirrors the registry's inclusion/exclusion lists for every characteristic).
DEAD = (SCT, "419099009", "Dead")


class AliveClause(Clause):
    kind: Literal["alive"]


def evaluate(clause: AliveClause, ctx: Context, record: PatientRecord) -> Outcome:
    patient = record.patient
    if patient.get("deceasedBoolean") is True:
        return Outcome(NOT_MET, "patient is deceased", (record.key,))
    died = patient.get("deceasedDateTime")
    if died is not None:
        day = day_of(died)
        if day is None or day <= ctx.as_of:
            return Outcome(NOT_MET, "patient is deceased", (record.key,))
    return Outcome(MET, "no death recorded", (record.key,))


def reads(clause: AliveClause) -> Reads:
    return Reads(resource_types=("Patient",), patient=True)


def characteristic(clause: AliveClause, criteria: Definitions) -> Characteristic:
    return concept(DEAD, "Deceased"), {"valueBoolean": False}


KIND = Kind("alive", AliveClause, evaluate, reads, characteristic)
