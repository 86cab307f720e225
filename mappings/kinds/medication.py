"""A medication on record: active now, or stopped within a number of days; optionally systemic only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any, Literal

from mappings.clinical.dates import day_of
from mappings.clinical.record import PatientRecord, normalise_reference
from mappings.clinical.tri import MET, UNKNOWN
from mappings.concepts import ConceptSet, Model, Result

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads, ref, via
from .publish import SCT, concept, value_concept, with_qualifiers

DRUG = (SCT, "410942007", "Drug or medicament")


class EndedWithinDays(Model):
    ended_within_days: int


class MedicationClause(Clause):
    kind: Literal["medication"]
    concepts: tuple[str, ...]
    state: Literal["active"] | EndedWithinDays = "active"
    exclude_routes: str | None = None
    when_absent: Result = "not-met"

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        if self.exclude_routes:
            yield self.exclude_routes


def evaluate(clause: MedicationClause, ctx: Context, record: PatientRecord) -> Outcome:
    sets = [ctx.concepts[name] for name in clause.concepts]
    routes = ctx.concepts[clause.exclude_routes] if clause.exclude_routes else None
    present: list[dict[str, Any]] = []
    uncertain: list[dict[str, Any]] = []
    past: list[dict[str, Any]] = []
    for resource in (*record.of_type("MedicationRequest"), *record.of_type("MedicationStatement")):
        medication = _concept(resource, record, ctx)
        if not any(s.matching_coding(medication) for s in sets):
            continue
        state = _state(resource, clause.state, ctx.as_of)
        if state is None:
            continue
        if routes is not None and state != "past":
            route = _route_kind(resource, routes)
            if route == "local":
                continue
            if route == "missing" and state == "present":
                state = "uncertain"
        {"present": present, "uncertain": uncertain, "past": past}[state].append(resource)
    what = clause.label or "matching medication"
    if present:
        found = via(present, *sets, element="medicationCodeableConcept")
        return Outcome(MET, f"{what} on record{found}", tuple(map(ref, present)))
    if uncertain:
        return Outcome(
            UNKNOWN, f"{what} on record, status, dates or route unclear", tuple(map(ref, uncertain))
        )
    if past:
        return Outcome(clause.when_absent, f"{what} on record but not in the window", tuple(map(ref, past)))
    return Outcome(clause.when_absent, "no matching record")


def _concept(resource: dict[str, Any], record: PatientRecord, ctx: Context) -> dict[str, Any]:
    if "medicationCodeableConcept" in resource:
        return resource["medicationCodeableConcept"] or {}
    reference = (resource.get("medicationReference") or {}).get("reference")
    if reference:
        contained = reference[1:] if reference.startswith("#") else None
        if contained:
            for item in resource.get("contained") or ():
                if item.get("id") == contained:
                    return ctx.maps.translate_concept(item.get("code") or {})
        medication = record.medications.get(normalise_reference(reference) or "")
        if medication:
            return ctx.maps.translate_concept(medication.get("code") or {})
    return {}


def _state(resource: dict[str, Any], wanted: Any, as_of: date) -> str | None:
    """present / uncertain / past for the wanted state, or None when the record does not count."""
    status = resource.get("status")
    if status in ("entered-in-error", "cancelled", "not-taken", "draft"):
        return None
    started = day_of(resource.get("authoredOn")) or day_of(
        (resource.get("effectivePeriod") or {}).get("start")
    )
    started = started or day_of(resource.get("effectiveDateTime"))
    if started is not None and started > as_of:
        return None  # future-dated
    end = _medication_end(resource)
    ended_before = end is not None and end < as_of
    if status in ("active",) and not ended_before:
        current: bool | None = True
    elif status in ("completed", "stopped") or ended_before:
        current = False
    else:  # on-hold, intended, unknown
        current = None
    if wanted == "active":
        return {True: "present", False: "past", None: "uncertain"}[current]
    assert isinstance(wanted, EndedWithinDays)
    if current is True:
        return "past"  # still running: not a discontinuation
    if end is None:
        return "uncertain"
    days = (as_of - end).days
    if 0 <= days <= wanted.ended_within_days:
        return "present"
    return "past"


def _route_kind(resource: dict[str, Any], local_routes: ConceptSet) -> str:
    """'local' if every dosage names an inhaled/local route, 'systemic' if one does not, else 'missing'."""
    dosages = resource.get("dosageInstruction") or resource.get("dosage") or ()
    routes = [d.get("route") for d in dosages if d.get("route")]
    if not routes:
        return "missing"
    return "local" if all(local_routes.matching_coding(r) for r in routes) else "systemic"


def _medication_end(resource: dict[str, Any]) -> date | None:
    period = (
        resource.get("effectivePeriod") or (resource.get("dispenseRequest") or {}).get("validityPeriod") or {}
    )
    return day_of(period.get("end"))


def reads(clause: MedicationClause) -> Reads:
    days = clause.state.ended_within_days if isinstance(clause.state, EndedWithinDays) else None
    return Reads(resource_types=("MedicationRequest", "MedicationStatement", "Medication"), window_days=days)


def characteristic(clause: MedicationClause, criteria: Definitions) -> Characteristic:
    if isinstance(clause.state, EndedWithinDays):
        qualifiers = [f"stopped within {clause.state.ended_within_days} days"]
    else:
        qualifiers = ["current"]
    if clause.exclude_routes:
        qualifiers.append("systemic routes only")
    code = concept(DRUG, with_qualifiers("Medication", clause, qualifiers))
    sets = [criteria.concept(n) for n in clause.concepts]
    return code, {"valueCodeableConcept": value_concept(sets, criteria)}


KIND = Kind("medication", MedicationClause, evaluate, reads, characteristic)
