"""A condition on record: current, ever (history) or within a number of years; optionally at a body site."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from mappings.clinical.dates import add_years, day_of
from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import UNKNOWN
from mappings.concepts import Model, Result

from .base import (
    Characteristic,
    Clause,
    Context,
    Definitions,
    Kind,
    Outcome,
    Reads,
    code_of,
    ref,
    status_code,
    suspected,
    verification,
    via,
)
from .publish import DIAGNOSIS, concept, value_concept, with_qualifiers

_CURRENT_STATUSES = {"active", "recurrence", "relapse"}
_NOT_CURRENT_STATUSES = {"inactive", "remission", "resolved"}


class WithinYears(Model):
    within_years: int


class ConditionClause(Clause):
    kind: Literal["condition"]
    concepts: tuple[str, ...]
    match: Literal["current", "history"] | WithinYears = "current"
    body_site: str | None = None
    when_present: Result = "met"
    when_absent: Result = "not-met"

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        if self.body_site:
            yield self.body_site


def evaluate(clause: ConditionClause, ctx: Context, record: PatientRecord) -> Outcome:
    sets = [ctx.concepts[name] for name in clause.concepts]
    site = ctx.concepts[clause.body_site] if clause.body_site else None
    present: list[dict[str, Any]] = []
    uncertain: list[dict[str, Any]] = []
    past: list[dict[str, Any]] = []
    doubtful: list[dict[str, Any]] = []
    broader: list[dict[str, Any]] = []
    for condition in ctx.conditions(record):
        if not any(s.matching_coding(code_of(condition)) for s in sets):
            if any(s.broader_coding(code_of(condition)) for s in sets):
                broader.append(condition)
            continue
        if site is not None and not any(site.matching_coding(b) for b in condition.get("bodySite") or ()):
            continue
        state = _state(condition, clause.match, ctx)
        if state == "present" and suspected(condition):
            doubtful.append(condition)
            continue
        {"present": present, "uncertain": uncertain, "past": past}[state].append(condition)
    what = clause.label or "matching condition"
    if present:
        reason = f"{what} on record" + via(present, *sets)
        if clause.when_present == UNKNOWN:
            reason += "; needs review"
        return Outcome(clause.when_present, reason, tuple(map(ref, present)))
    if doubtful:
        return Outcome(
            UNKNOWN,
            f"{what} suspected only ({verification(doubtful[0])}); needs review",
            tuple(map(ref, doubtful)),
        )
    if uncertain:
        return Outcome(UNKNOWN, f"{what} on record, status or dates unclear", tuple(map(ref, uncertain)))
    if broader and site is None:
        coding = next(filter(None, (s.broader_coding(code_of(broader[0])) for s in sets)))
        return Outcome(
            UNKNOWN,
            f"a broader code ({coding.get('code')}) that may be {what}: needs review",
            tuple(map(ref, broader)),
        )
    if past:
        return Outcome(
            clause.when_absent,
            f"{what} on record but not current or in the window",
            tuple(map(ref, past)),
        )
    return Outcome(clause.when_absent, "no matching record")


def _state(condition: dict[str, Any], match: Any, ctx: Context) -> str:
    clinical = status_code(condition.get("clinicalStatus"))
    if match == "history":
        return "present"
    if clinical in _CURRENT_STATUSES:
        return "present"
    if match == "current":
        if clinical in _NOT_CURRENT_STATUSES:
            return "past"
        abated = day_of(condition.get("abatementDateTime"))
        if clinical is None and abated is not None and abated <= ctx.as_of:
            return "past"
        return "uncertain"
    assert isinstance(match, WithinYears)
    since = add_years(ctx.as_of, -match.within_years)
    onset = day_of(condition.get("onsetDateTime")) or day_of(condition.get("recordedDate"))
    abated = day_of(condition.get("abatementDateTime"))
    if (onset and onset >= since) or (abated and abated >= since):
        return "present"
    # Not current and no date in the window: past only if we know when it ended (before the window).
    # An old onset with no abatement date could still have been active within the window.
    return "past" if abated is not None else "uncertain"


def reads(clause: ConditionClause) -> Reads:
    years = clause.match.within_years if isinstance(clause.match, WithinYears) else None
    return Reads(resource_types=("Condition",), window_years=years)


def characteristic(clause: ConditionClause, criteria: Definitions) -> Characteristic:
    qualifiers = [
        f"current or within {clause.match.within_years} years"
        if isinstance(clause.match, WithinYears)
        else clause.match
    ]
    if clause.body_site:
        qualifiers.append(f"body site: {criteria.concept(clause.body_site).display}")
    code = concept(DIAGNOSIS, with_qualifiers("Diagnosis", clause, qualifiers))
    sets = [criteria.concept(n) for n in clause.concepts]
    return code, {"valueCodeableConcept": value_concept(sets, criteria)}


KIND = Kind("condition", ConditionClause, evaluate, reads, characteristic)
