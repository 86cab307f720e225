"""Age in whole years on the as-of date, inclusive; a partial birth date gives a range of ages."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from mappings.clinical.dates import day_of, years_between
from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import MET, NOT_MET, UNKNOWN

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads
from .publish import LOINC, UCUM, concept

AGE = (LOINC, "30525-0", "Age")


class AgeClause(Clause):
    kind: Literal["age"]
    min_years: int
    max_years: int


def evaluate(clause: AgeClause, ctx: Context, record: PatientRecord) -> Outcome:
    as_of = ctx.as_of
    raw = record.patient.get("birthDate")
    if not isinstance(raw, str) or not raw:
        return Outcome(UNKNOWN, "no birth date recorded", (record.key,))
    earliest, latest = _birth_bounds(raw)
    if earliest is None or latest is None:
        return Outcome(UNKNOWN, "birth date not readable", (record.key,))
    if latest > as_of:
        return Outcome(UNKNOWN, f"birth date after {as_of.isoformat()}", (record.key,))
    oldest = years_between(earliest, as_of)
    youngest = years_between(latest, as_of)
    inside = [clause.min_years <= age <= clause.max_years for age in (oldest, youngest)]
    if youngest == oldest:
        described = f"age {youngest} years on {as_of.isoformat()}"
    else:
        described = f"age {youngest}-{oldest} years on {as_of.isoformat()} (partial birth date)"
    if all(inside):
        return Outcome(MET, described, (record.key,))
    if not any(inside):
        return Outcome(NOT_MET, f"{described}, outside {clause.min_years}-{clause.max_years}", (record.key,))
    return Outcome(UNKNOWN, described, (record.key,))


def _birth_bounds(raw: str) -> tuple[date | None, date | None]:
    """Earliest and latest possible birth day for a FHIR date of any precision."""
    parts = raw.split("-")
    try:
        if len(parts) == 1:
            year = int(parts[0])
            return date(year, 1, 1), date(year, 12, 31)
        if len(parts) == 2:
            year, month = int(parts[0]), int(parts[1])
            first = date(year, month, 1)
            last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            return first, last
        day = day_of(raw)
        return day, day
    except ValueError:
        return None, None


def reads(clause: AgeClause) -> Reads:
    return Reads(resource_types=("Patient",), patient=True)


def characteristic(clause: AgeClause, criteria: Definitions) -> Characteristic:
    low = {"value": clause.min_years, "unit": "years", "system": UCUM, "code": "a"}
    high = {"value": clause.max_years, "unit": "years", "system": UCUM, "code": "a"}
    return concept(AGE, "Age"), {"valueRange": {"low": low, "high": high}}


KIND = Kind("age", AgeClause, evaluate, reads, characteristic)
