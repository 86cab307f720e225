"""A measurement or a coded result: the most recent usable result decides, within a window of days.

Quantities are compared in the threshold's unit (UCUM conversion, molar masses for mass <-> substance);
a comparator on a result ('<5') is an interval; thresholds may be relative to the upper limit of normal
of the patient's reference range. Coded results are positive/negative or a set of answers. A result that
cannot be converted or read is unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import model_validator

from mappings.clinical.dates import day_of, effective_day, years_between
from mappings.clinical.mcode import answer_score
from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import MET, NOT_MET, UNKNOWN
from mappings.clinical.units import compare, convert, ucum_code
from mappings.concepts import Comparator, ConceptSet, Result

from .base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads, ref, status_code, via
from .publish import SCT, UCUM, clean, codes_of, concept, number, value_concept, with_qualifiers

POSITIVE = (SCT, "10828004", "Positive")
NEGATIVE = (SCT, "260385009", "Negative")
# Thresholds relative to the upper limit of normal: UCUM has no ULN unit, but a bare annotation is a
# valid UCUM unit (dimensionless, "1"), so "3 {ULN}" reads as three times the ULN and can never be
# mistaken for an absolute concentration.
ULN_UNIT = ("x ULN", "{ULN}")

IGNORED_OBSERVATION = {"entered-in-error", "cancelled"}
_POSITIVE_WORDS = {"positive", "detected", "reactive", "present", "pos"}
_NEGATIVE_WORDS = {"negative", "not detected", "non-reactive", "nonreactive", "absent", "undetected", "neg"}
_ORDINAL_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
)


class ObservationClause(Clause):
    kind: Literal["observation"]
    concepts: tuple[str, ...]
    comparator: Comparator | None = None
    value: float | None = None
    unit: str | None = None
    relative_to: Literal["uln"] | None = None
    analyte: str | None = None
    # Coded results: 'positive', 'negative', or the name of a concept set of answers that meet.
    expect: str | None = None
    expect_not: str | None = None
    window_days: int | None = None
    room_air: str | None = None
    when_absent: Result = "unknown"

    @model_validator(mode="after")
    def _one_test(self) -> ObservationClause:
        quantitative = self.comparator is not None
        if quantitative == (self.expect is not None):
            raise ValueError("an observation clause needs either comparator/value or expect")
        if quantitative and self.value is None:
            raise ValueError("comparator needs value")
        if quantitative and self.relative_to is None and not self.unit:
            raise ValueError("a quantitative threshold needs a unit (UCUM) or relative_to")
        return self

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        for extra in (self.room_air, self.expect_not):
            if extra:
                yield extra
        if self.expect and self.expect not in ("positive", "negative"):
            yield self.expect


def evaluate(clause: ObservationClause, ctx: Context, record: PatientRecord) -> Outcome:
    codes = [code for name in clause.concepts for code in ctx.exact_codes[name]]
    what = clause.label or "result"
    dated: list[tuple[tuple[date, float], dict[str, Any]]] = []
    undated: list[dict[str, Any]] = []
    for obs in record.observations_coded(codes):
        if obs.get("status") in IGNORED_OBSERVATION:
            continue
        day = effective_day(obs)
        if day is None:
            undated.append(obs)
        elif day <= ctx.as_of:
            dated.append((instant_key(obs, day), obs))
    if not dated:
        if undated and clause.window_days is None:
            return _judge(clause, ctx, record, undated[0], None)
        if undated:
            return Outcome(UNKNOWN, f"{what}: only undated results", tuple(map(ref, undated)))
        return Outcome(clause.when_absent, f"no {what} result")
    dated.sort(key=lambda item: item[0], reverse=True)
    (newest_day, _), newest = dated[0]
    age_days = (ctx.as_of - newest_day).days
    if clause.window_days is not None and age_days > clause.window_days:
        return Outcome(
            UNKNOWN,
            f"most recent {what} is {age_days} days old (needs one within {clause.window_days} days)",
            (ref(newest),),
        )
    return _judge(clause, ctx, record, newest, newest_day)


def _judge(
    clause: ObservationClause, ctx: Context, record: PatientRecord, obs: dict[str, Any], day: date | None
) -> Outcome:
    what = clause.label or "result"
    when = f" on {day.isoformat()}" if day else ""
    evidence = (ref(obs),)
    if clause.room_air:
        oxygen = _supplemental_oxygen(obs, ctx.concepts[clause.room_air])
        if oxygen is not False:
            note = "taken on supplemental oxygen" if oxygen else "oxygen delivery not readable"
            return Outcome(UNKNOWN, f"{what}{when} {note}, not a room-air value", evidence)
    if clause.expect is not None:
        return _judge_coded(clause, ctx, obs, f"{what}{when}", evidence)
    measured = _measured(obs, clause, record, ctx)
    if isinstance(measured, str):
        return Outcome(UNKNOWN, f"{what}{when}: {measured}", evidence)
    low, high, shown, threshold_text = measured
    assert clause.comparator is not None and clause.value is not None
    # '>80' excludes 80 itself: an open bound stands for the values just past it.
    _, _, quantity_comparator = _numeric_value(obs)
    lo_ok = _bound_holds(low, quantity_comparator == ">", True, clause.comparator, clause.value)
    hi_ok = _bound_holds(high, quantity_comparator == "<", False, clause.comparator, clause.value)
    if lo_ok and hi_ok:
        result = MET
    elif not lo_ok and not hi_ok:
        result = NOT_MET
    else:
        result = UNKNOWN
    local = via([obs], *(ctx.concepts[n] for n in clause.concepts))
    return Outcome(result, f"{what} {shown}{when} ({clause.comparator} {threshold_text}){local}", evidence)


def _measured(
    obs: dict[str, Any], clause: ObservationClause, record: PatientRecord, ctx: Context
) -> tuple[float, float, str, str] | str:
    """(lowest, highest possible value in the threshold's terms, shown value, threshold) or why not."""
    molar_mass = ctx.definition.analytes[clause.analyte].molar_mass if clause.analyte else None
    value, unit, comparator = _numeric_value(obs)
    if value is None:
        return "no numeric value"
    low, high = _interval(value, comparator)
    shown = f"{comparator or ''}{_fmt(value)} {unit or ''}".strip()
    if clause.relative_to == "uln":
        uln = _upper_limit(obs, record.patient, ctx.as_of)
        if uln is None:
            return f"{shown}, no normal reference range with an upper limit"
        uln_value, uln_unit = uln
        uln_converted = convert(uln_value, uln_unit, unit or "", molar_mass) if unit else None
        if uln_converted is None or uln_converted <= 0:
            return f"{shown}, reference range unit {uln_unit!r} not convertible to {unit!r}"
        ratio_low, ratio_high = low / uln_converted, high / uln_converted
        return (
            ratio_low,
            ratio_high,
            f"{shown} = {_fmt(value / uln_converted)} x ULN ({_fmt(uln_value)} {uln_unit})",
            f"{_fmt(clause.value or 0)} x ULN",
        )
    assert clause.unit is not None
    if unit is None:
        if clause.unit in ("{score}", "{grade}"):
            unit = clause.unit
        else:
            return f"{shown}, no unit"
    lo = convert(low, unit, clause.unit, molar_mass) if low != float("-inf") else low
    hi = convert(high, unit, clause.unit, molar_mass) if high != float("inf") else high
    if lo is None or hi is None:
        return f"{shown}, unit {unit!r} not convertible to {clause.unit!r}"
    converted = convert(value, unit, clause.unit, molar_mass)
    if unit != clause.unit and converted is not None:
        shown += f" = {_fmt(converted)} {clause.unit}"
    return (lo, hi, shown, f"{_fmt(clause.value or 0)} {clause.unit}")


def _judge_coded(
    clause: ObservationClause, ctx: Context, obs: dict[str, Any], what: str, evidence: tuple[str, ...]
) -> Outcome:
    concepts = ctx.concepts
    if clause.expect in ("positive", "negative"):
        polarity = _polarity(obs, concepts.get("positive_answer"), concepts.get("negative_answer"))
        if polarity is None:
            return Outcome(UNKNOWN, f"{what}: result not interpretable as positive or negative", evidence)
        result = MET if polarity == clause.expect else NOT_MET
        return Outcome(result, f"{what}: {polarity}", evidence)
    answer = obs.get("valueCodeableConcept")
    assert clause.expect is not None
    if concepts[clause.expect].matching_coding(answer):
        return Outcome(MET, f"{what}: {concepts[clause.expect].display}", evidence)
    if clause.expect_not and concepts[clause.expect_not].matching_coding(answer):
        return Outcome(NOT_MET, f"{what}: {concepts[clause.expect_not].display}", evidence)
    return Outcome(UNKNOWN, f"{what}: answer not interpretable", evidence)


def _supplemental_oxygen(obs: dict[str, Any], oxygen: ConceptSet) -> bool | None:
    """True on supplemental O2, False on room air (or no O2 component), None when unreadable."""
    for component in obs.get("component") or ():
        coding = oxygen.matching_coding(component.get("code"))
        if not coding:
            continue
        quantity = component.get("valueQuantity") or {}
        value = quantity.get("value")
        if not isinstance(value, int | float):
            return None
        unit = ucum_code(quantity)
        if unit == "%":
            return value > 21
        if unit in ("L/min", "l/min", "mL/min"):
            return value > 0
        return None
    return False


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def instant_key(resource: dict[str, Any], day: date | None) -> tuple[date, float]:
    """Sort key: the day, then the exact instant where the timestamp has one (same-day ties)."""
    raw = resource.get("effectiveDateTime") or resource.get("effectiveInstant") or resource.get("issued")
    stamp = 0.0
    if isinstance(raw, str) and "T" in raw:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            stamp = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            stamp = 0.0
    return (day or date.min, stamp)


def _numeric_value(obs: dict[str, Any]) -> tuple[float | None, str | None, str | None]:
    if "valueQuantity" in obs:
        quantity = obs["valueQuantity"] or {}
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, None, None
        return float(value), ucum_code(quantity), quantity.get("comparator")
    if isinstance(obs.get("valueInteger"), int) and not isinstance(obs.get("valueInteger"), bool):
        return float(obs["valueInteger"]), None, None
    concept = obs.get("valueCodeableConcept")
    score = answer_score(obs)  # a LOINC answer (ECOG, Karnofsky) from a verified table
    if score is not None:
        return float(score), None, None
    if isinstance(concept, dict):
        for coding in concept.get("coding") or ():
            for ext in coding.get("extension") or ():
                if ext.get("url") in _ORDINAL_EXTENSIONS and isinstance(ext.get("valueDecimal"), int | float):
                    return float(ext["valueDecimal"]), None, None
    return None, None, None


def _interval(value: float, comparator: str | None) -> tuple[float, float]:
    """The values a Quantity with a comparator can stand for: '<5' is anything below 5."""
    if comparator in ("<", "<="):
        return float("-inf"), value
    if comparator in (">", ">="):
        return value, float("inf")
    return value, value


def _bound_holds(bound: float, open_bound: bool, lower: bool, comparator: str, threshold: float) -> bool:
    """Whether ``bound comparator threshold`` holds for the values at one end of a result's interval.

    An open bound equal to the threshold (a '>80' result against '> 80') stands for values just above
    it (``lower``: the interval's lower end) or just below it, so the comparison is decided by the side.
    """
    if open_bound and compare(bound, "<=", threshold) and compare(bound, ">=", threshold):
        return comparator in (">", ">=") if lower else comparator in ("<", "<=")
    return compare(bound, comparator, threshold)


def _upper_limit(obs: dict[str, Any], patient: dict[str, Any], as_of: date) -> tuple[float, str] | None:
    """The `high` of the normal reference range that fits the patient's age and sex."""
    born = day_of(patient.get("birthDate"))
    age = years_between(born, as_of) if born else None
    gender = patient.get("gender")
    for ref_range in obs.get("referenceRange") or ():
        kind = status_code(ref_range.get("type"))
        if kind not in (None, "normal"):
            continue
        high = ref_range.get("high") or {}
        if not isinstance(high.get("value"), int | float):
            continue
        applies = {c.get("code") for a in ref_range.get("appliesTo") or () for c in a.get("coding") or ()}
        sexes = applies & {"male", "female", "248153007", "248152002"}
        if sexes:  # a sex-specific range never applies to a patient of unknown sex
            wanted = {"male": {"male", "248153007"}, "female": {"female", "248152002"}}.get(
                str(gender), set()
            )
            if not sexes & wanted:
                continue
        age_range = ref_range.get("age")
        if age_range:
            if age is None:
                continue
            low_years = _years(age_range.get("low"))
            high_years = _years(age_range.get("high"))
            if (low_years is not None and age < low_years) or (high_years is not None and age > high_years):
                continue
        unit = ucum_code(high)
        if unit is None:
            continue
        return float(high["value"]), unit
    return None


def _years(quantity: dict[str, Any] | None) -> float | None:
    if not quantity or not isinstance(quantity.get("value"), int | float):
        return None
    years = convert(float(quantity["value"]), ucum_code(quantity) or "a", "a")
    return years


def _polarity(obs: dict[str, Any], positive: ConceptSet | None, negative: ConceptSet | None) -> str | None:
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        if positive and positive.matching_coding(concept):
            return "positive"
        if negative and negative.matching_coding(concept):
            return "negative"
        text = (concept.get("text") or "").strip().lower()
        if text in _POSITIVE_WORDS:
            return "positive"
        if text in _NEGATIVE_WORDS:
            return "negative"
    if isinstance(obs.get("valueString"), str):
        text = obs["valueString"].strip().lower()
        if text in _POSITIVE_WORDS:
            return "positive"
        if text in _NEGATIVE_WORDS:
            return "negative"
    if isinstance(obs.get("valueBoolean"), bool):
        return "positive" if obs["valueBoolean"] else "negative"
    if "valueQuantity" in obs:
        value, _, comparator = _numeric_value(obs)
        if value is not None:
            if comparator in ("<", "<=") or value == 0:
                return "negative"  # below the limit of detection
            if value > 0:
                return "positive"
    for interpretation in obs.get("interpretation") or ():
        if positive and positive.matching_coding(interpretation):
            return "positive"
        if negative and negative.matching_coding(interpretation):
            return "negative"
    return None


def reads(clause: ObservationClause) -> Reads:
    return Reads(
        resource_types=("Observation",), exact_concepts=clause.concepts, window_days=clause.window_days
    )


def characteristic(clause: ObservationClause, criteria: Definitions) -> Characteristic:
    qualifiers = []
    if clause.window_days is not None:
        qualifiers.append(f"most recent result within {clause.window_days} days")
    if clause.relative_to == "uln":
        qualifiers.append("relative to the upper limit of normal")
    if clause.room_air:
        qualifiers.append("on room air")
    sets = [criteria.concept(n) for n in clause.concepts]
    code = clean(
        {
            "coding": codes_of(sets),
            "text": with_qualifiers("; ".join(s.display for s in sets), clause, qualifiers),
        }
    )
    if clause.comparator is not None:
        unit, ucum = ULN_UNIT if clause.relative_to == "uln" else (clause.unit or "", clause.unit or "")
        if ucum.startswith("{") and ucum.endswith("}") and clause.relative_to != "uln":
            unit = ucum[1:-1]  # {score} -> score: the annotation is the human-readable unit
        quantity = {
            "value": number(clause.value if clause.value is not None else 0),
            "comparator": clause.comparator,
            "unit": unit,
            "system": UCUM,
            "code": ucum,
        }
        return code, {"valueQuantity": quantity}
    if clause.expect in ("positive", "negative"):
        answer = POSITIVE if clause.expect == "positive" else NEGATIVE
        return code, {"valueCodeableConcept": concept(answer, answer[2])}
    assert clause.expect is not None
    return code, {"valueCodeableConcept": value_concept([criteria.concept(clause.expect)], criteria)}


KIND = Kind("observation", ObservationClause, evaluate, reads, characteristic)
