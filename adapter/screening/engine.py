"""The screening engine: one patient record + the criteria definition -> a result per criterion.

Rules that hold everywhere (see the criteria file for per-criterion decisions):
- A missing fact is ``unknown``, never a silent exclusion. Condition/procedure/medication exclusions
  with no matching record are ``not-met``; a needed measurement with no usable result is ``unknown``.
- Hygiene: Observations entered-in-error/cancelled or dated after the as-of date are ignored;
  Conditions refuted/entered-in-error are ignored; Procedures not-done/entered-in-error are ignored.
- The most recent result decides; a result outside the window is ``unknown``, not a pass or a fail.
- A unit that cannot be converted gives ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mappings.criteria import (
    AgeClause,
    AliveClause,
    AllOf,
    AnyOf,
    Clause,
    ConceptSet,
    ConditionClause,
    CriteriaDefinition,
    Criterion,
    DiagnosisClause,
    EndedWithinDays,
    ImmunizationClause,
    ManualClause,
    MedicationClause,
    ObservationClause,
    ProcedureClause,
    WithinYears,
)
from mappings.terminology.conceptmap import ConceptMaps, translated_from

from .dates import add_years, day_of, effective_day, years_between
from .reads import ScreeningReads
from .record import PatientRecord, resource_key
from .results import CriterionResult, PatientResult
from .signs import DiagnosisSigns, Wording
from .tri import MET, NOT_MET, UNKNOWN, Tri, all_of, any_of
from .units import compare, convert, ucum_code

_CURRENT_STATUSES = {"active", "recurrence", "relapse"}
_NOT_CURRENT_STATUSES = {"inactive", "remission", "resolved"}
_IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
# A suspected diagnosis is a reason to look, not a fact: it makes a criterion unknown, never met.
_SUSPECTED_VERIFICATION = {"provisional", "differential", "unconfirmed"}
_IGNORED_OBSERVATION = {"entered-in-error", "cancelled"}
# "preparation" is a planned procedure: not yet received, so it cannot count as prior therapy or surgery.
_IGNORED_PROCEDURE = {"not-done", "entered-in-error", "preparation"}
_POSITIVE_WORDS = {"positive", "detected", "reactive", "present", "pos"}
_NEGATIVE_WORDS = {"negative", "not detected", "non-reactive", "nonreactive", "absent", "undetected", "neg"}
_ORDINAL_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
)


@dataclass(frozen=True)
class Outcome:
    result: Tri
    reason: str
    evidence: tuple[str, ...] = ()


def _ref(resource: dict[str, Any]) -> str:
    return resource_key(resource) or f"{resource.get('resourceType')}/(no id)"


def _code_of(resource: dict[str, Any], element: str = "code") -> dict[str, Any]:
    return resource.get(element) or {}


def _status_code(concept: dict[str, Any] | None) -> str | None:
    for coding in (concept or {}).get("coding") or ():
        if coding.get("code"):
            return str(coding["code"])
    return None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _instant_key(resource: dict[str, Any], day: date | None) -> tuple[date, float]:
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


class Screener:
    """Evaluates patient records against one criteria definition at one as-of date."""

    def __init__(self, definition: CriteriaDefinition, as_of: date) -> None:
        self.definition = definition
        self.as_of = as_of
        self.manual_reason = definition.manual_review_reason
        self._exact_codes = {
            name: [(c.system, c.code) for c in concept.codes] for name, concept in definition.concepts.items()
        }
        self._usable_conditions: tuple[PatientRecord, list[dict[str, Any]]] | None = None
        self._reads = ScreeningReads(definition)
        self._signs = DiagnosisSigns(definition)
        self._wordings: dict[tuple[str, ...], Wording] = {}
        self._maps = definition.concept_maps
        self._reads_patient = {c.id for c in definition.criteria if _reads_patient(c.rule)}
        self._bare_results: dict[str, CriterionResult] = {}
        self._leaf: dict[str, Callable[[Any, PatientRecord], Outcome]] = {
            "age": self._age,
            "alive": self._alive,
            "diagnosis": self._diagnosis,
            "condition": self._condition,
            "observation": self._observation,
            "medication": self._medication,
            "procedure": self._procedure,
            "immunization": self._immunization,
            "manual": self._manual,
        }

    # --- public ----------------------------------------------------------------------------------

    def screen(self, record: PatientRecord) -> PatientResult:
        self._usable_conditions = None
        if self._maps:
            record = _translated(record, self._maps)
        # Most of a hospital has nothing a criterion reads but the Patient. Such a record gets the same
        # answer as an empty one for every criterion that does not read the Patient: worked out once.
        bare = self._is_bare(record)
        results = []
        for criterion in self.definition.criteria:
            if bare and criterion.id not in self._reads_patient:
                results.append(self._bare_result(criterion))
            else:
                results.append(self._criterion_result(criterion, record))
        excluded = any(
            (r.type == "inclusion" and r.result == NOT_MET) or (r.type == "exclusion" and r.result == MET)
            for r in results
        )
        return PatientResult(
            patient=record.key, status="not-eligible" if excluded else "candidate", criteria=results
        )

    def _criterion_result(self, criterion: Criterion, record: PatientRecord) -> CriterionResult:
        outcome = self._evaluate(criterion.rule, record, top=True)
        return CriterionResult(
            id=criterion.id,
            type=criterion.type,
            result=outcome.result,
            reason=outcome.reason,
            evidence=list(outcome.evidence),
        )

    def _is_bare(self, record: PatientRecord) -> bool:
        """True when no resource of the record but the Patient can change a result."""
        reads = self._reads.reads
        return not any(reads(r) for items in record.resources.values() for r in items)

    def _bare_result(self, criterion: Criterion) -> CriterionResult:
        cached = self._bare_results.get(criterion.id)
        if cached is None:
            cached = self._criterion_result(criterion, PatientRecord(key="(empty)", patient={}))
            self._bare_results[criterion.id] = cached
        return cached

    # --- tree ------------------------------------------------------------------------------------

    def _evaluate(self, clause: Clause, record: PatientRecord, top: bool = False) -> Outcome:
        if isinstance(clause, AllOf | AnyOf):
            children = [self._evaluate(child, record) for child in clause.clauses]
            combine = all_of if isinstance(clause, AllOf) else any_of
            result = combine(c.result for c in children)
            labels = [child.label or child.kind for child in clause.clauses]
            reason = "; ".join(
                c.reason if c.reason.startswith(label) else f"{label}: {c.reason}"
                for label, c in zip(labels, children, strict=True)
            )
            evidence = tuple(dict.fromkeys(ref for c in children for ref in c.evidence))
            return Outcome(result, reason, evidence)
        gated = self._sex_gate(clause, record)
        if gated is not None:
            return gated
        return self._leaf[clause.kind](clause, record)

    def _sex_gate(self, clause: Clause, record: PatientRecord) -> Outcome | None:
        wanted = getattr(clause, "only_for_sex", None)
        if not wanted:
            return None
        gender = record.patient.get("gender")
        # Unknown or other gender is screened as the gated sex: missing data must not pass a check.
        if gender in ("male", "female") and gender != wanted:
            return Outcome(clause.otherwise or UNKNOWN, f"not applicable ({gender})", (record.key,))
        return None

    # --- leaves ----------------------------------------------------------------------------------

    def _manual(self, clause: ManualClause, record: PatientRecord) -> Outcome:
        return Outcome(UNKNOWN, self.manual_reason)

    def _age(self, clause: AgeClause, record: PatientRecord) -> Outcome:
        raw = record.patient.get("birthDate")
        if not isinstance(raw, str) or not raw:
            return Outcome(UNKNOWN, "no birth date recorded", (record.key,))
        earliest, latest = _birth_bounds(raw)
        if earliest is None or latest is None:
            return Outcome(UNKNOWN, "birth date not readable", (record.key,))
        if latest > self.as_of:
            return Outcome(UNKNOWN, f"birth date after {self.as_of.isoformat()}", (record.key,))
        oldest = years_between(earliest, self.as_of)
        youngest = years_between(latest, self.as_of)
        inside = [clause.min_years <= age <= clause.max_years for age in (oldest, youngest)]
        if youngest == oldest:
            described = f"age {youngest} years on {self.as_of.isoformat()}"
        else:
            described = f"age {youngest}-{oldest} years on {self.as_of.isoformat()} (partial birth date)"
        if all(inside):
            return Outcome(MET, described, (record.key,))
        if not any(inside):
            return Outcome(
                NOT_MET, f"{described}, outside {clause.min_years}-{clause.max_years}", (record.key,)
            )
        return Outcome(UNKNOWN, described, (record.key,))

    def _alive(self, clause: AliveClause, record: PatientRecord) -> Outcome:
        patient = record.patient
        if patient.get("deceasedBoolean") is True:
            return Outcome(NOT_MET, "patient is deceased", (record.key,))
        died = patient.get("deceasedDateTime")
        if died is not None:
            day = day_of(died)
            if day is None or day <= self.as_of:
                return Outcome(NOT_MET, "patient is deceased", (record.key,))
        return Outcome(MET, "no death recorded", (record.key,))

    def _conditions(self, record: PatientRecord) -> list[dict[str, Any]]:
        """The record's Conditions that count (worked out once per record, read by many criteria)."""
        cached = self._usable_conditions
        if cached is not None and cached[0] is record:
            return cached[1]
        usable = []
        for condition in record.of_type("Condition"):
            if _status_code(condition.get("verificationStatus")) in _IGNORED_VERIFICATION:
                continue
            onset = day_of(condition.get("onsetDateTime")) or day_of(condition.get("recordedDate"))
            if onset is not None and onset > self.as_of:
                continue  # future-dated
            usable.append(condition)
        self._usable_conditions = (record, usable)
        return usable

    def _diagnosis(self, clause: DiagnosisClause, record: PatientRecord) -> Outcome:
        concepts = self.definition.concepts
        lineage, unknown = concepts[clause.lineage], concepts[clause.unknown_lineage]
        other = concepts[clause.other_lineage] if clause.other_lineage else None
        statuses = [concepts[name] for name in clause.status]
        t_cell, b_cell, unspecified, rr, suspected = [], [], [], [], []
        hints: list[tuple[str, dict[str, Any]]] = []
        for condition in self._conditions(record):
            codes = [_code_of(condition)] + [
                ext.get("valueCodeableConcept") or {} for ext in condition.get("extension") or ()
            ]
            if _suspected(condition):
                if any(s.matching_coding(c) for s in (lineage, unknown, *statuses) for c in codes) or (
                    self._signs.any_sign(codes[0])
                ):
                    suspected.append(condition)
                continue
            coded = True
            if any(lineage.matching_coding(c) for c in codes):
                t_cell.append(condition)
            elif other is not None and any(other.matching_coding(c) for c in codes):
                b_cell.append(condition)
            elif unknown.matching_coding(codes[0]):
                unspecified.append(condition)
            else:
                coded = False
            if any(s.matching_coding(codes[0]) for s in statuses):
                rr.append(condition)
            elif not coded and not self._signs.recognised(codes[0]):
                hint = self._signs.broader_code(codes[0])
                if hint:
                    hints.append((f"a broader code ({hint})", condition))
                else:
                    words = self._signs.wording(codes[0])
                    if words:
                        hints.append((f'ALL named in text only ("{words}")', condition))
        if t_cell:
            line = Outcome(MET, "T-lineage ALL recorded" + _via(t_cell, lineage), tuple(map(_ref, t_cell)))
        elif b_cell and (hints or suspected):
            # B lineage coded, yet another record speaks of ALL in words or as a suspicion: a reviewer
            # decides, the text is not ignored.
            found = [c for _, c in hints] + suspected
            return Outcome(
                UNKNOWN,
                "ALL recorded with B lineage, but another record names ALL without a recognised code: "
                "needs review",
                tuple(dict.fromkeys(map(_ref, [*b_cell, *found]))),
            )
        elif b_cell:
            line = Outcome(
                NOT_MET, "ALL recorded with B lineage, no T-lineage record", tuple(map(_ref, b_cell))
            )
        elif unspecified or rr:
            found = unspecified or rr
            line = Outcome(
                UNKNOWN,
                "ALL recorded without lineage (T lineage not established)" + _via(found, unknown, *statuses),
                tuple(map(_ref, found)),
            )
        elif suspected or hints:
            parts = [f"{what}, not a recognised code" for what, _ in hints[:3]]
            if suspected:
                parts.insert(0, f"ALL suspected only ({_verification(suspected[0])})")
            refs = tuple(dict.fromkeys(_ref(c) for c in (*suspected, *(c for _, c in hints))))
            return Outcome(UNKNOWN, "; ".join(parts) + ": needs review", refs)
        else:
            return Outcome(NOT_MET, "no record of acute lymphoblastic leukaemia")
        if rr:
            status = Outcome(MET, "relapsed/refractory disease coded", tuple(map(_ref, rr)))
        else:
            status = Outcome(UNKNOWN, "no relapse or refractory code")
        result = all_of((line.result, status.result))
        reason = f"{line.reason}; {status.reason}"
        if suspected and result != MET:
            reason += f"; a suspected ALL diagnosis also on record ({_verification(suspected[0])})"
        evidence = line.evidence + status.evidence + tuple(map(_ref, suspected))
        return Outcome(result, reason, tuple(dict.fromkeys(evidence)))

    def _condition(self, clause: ConditionClause, record: PatientRecord) -> Outcome:
        sets = [self.definition.concepts[name] for name in clause.concepts]
        site = self.definition.concepts[clause.body_site] if clause.body_site else None
        present: list[dict[str, Any]] = []
        uncertain: list[dict[str, Any]] = []
        past: list[dict[str, Any]] = []
        suspected: list[dict[str, Any]] = []
        broader: list[dict[str, Any]] = []
        for condition in self._conditions(record):
            if not any(s.matching_coding(_code_of(condition)) for s in sets):
                if any(s.broader_coding(_code_of(condition)) for s in sets):
                    broader.append(condition)
                continue
            if site is not None and not any(site.matching_coding(b) for b in condition.get("bodySite") or ()):
                continue
            state = self._condition_state(condition, clause.match)
            if state == "present" and _suspected(condition):
                suspected.append(condition)
                continue
            {"present": present, "uncertain": uncertain, "past": past}[state].append(condition)
        what = clause.label or "matching condition"
        if present:
            reason = f"{what} on record" + _via(present, *sets)
            if clause.when_present == UNKNOWN:
                reason += "; needs review"
            return Outcome(clause.when_present, reason, tuple(map(_ref, present)))
        if suspected:
            return Outcome(
                UNKNOWN,
                f"{what} suspected only ({_verification(suspected[0])}); needs review",
                tuple(map(_ref, suspected)),
            )
        if uncertain:
            return Outcome(UNKNOWN, f"{what} on record, status or dates unclear", tuple(map(_ref, uncertain)))
        if broader and site is None:
            coding = next(filter(None, (s.broader_coding(_code_of(broader[0])) for s in sets)))
            return Outcome(
                UNKNOWN,
                f"a broader code ({coding.get('code')}) that may be {what}: needs review",
                tuple(map(_ref, broader)),
            )
        if past:
            return Outcome(
                clause.when_absent,
                f"{what} on record but not current or in the window",
                tuple(map(_ref, past)),
            )
        return Outcome(clause.when_absent, "no matching record")

    def _condition_state(self, condition: dict[str, Any], match: Any) -> str:
        clinical = _status_code(condition.get("clinicalStatus"))
        if match == "history":
            return "present"
        if clinical in _CURRENT_STATUSES:
            return "present"
        if match == "current":
            if clinical in _NOT_CURRENT_STATUSES:
                return "past"
            abated = day_of(condition.get("abatementDateTime"))
            if clinical is None and abated is not None and abated <= self.as_of:
                return "past"
            return "uncertain"
        assert isinstance(match, WithinYears)
        since = add_years(self.as_of, -match.within_years)
        onset = day_of(condition.get("onsetDateTime")) or day_of(condition.get("recordedDate"))
        abated = day_of(condition.get("abatementDateTime"))
        if (onset and onset >= since) or (abated and abated >= since):
            return "present"
        # Not current and no date in the window: past only if we know when it ended (before the window).
        # An old onset with no abatement date could still have been active within the window.
        return "past" if abated is not None else "uncertain"

    # --- observations ----------------------------------------------------------------------------

    def _observation(self, clause: ObservationClause, record: PatientRecord) -> Outcome:
        codes = [code for name in clause.concepts for code in self._exact_codes[name]]
        what = clause.label or "result"
        dated: list[tuple[tuple[date, float], dict[str, Any]]] = []
        undated: list[dict[str, Any]] = []
        for obs in record.observations_coded(codes):
            if obs.get("status") in _IGNORED_OBSERVATION:
                continue
            day = effective_day(obs)
            if day is None:
                undated.append(obs)
            elif day <= self.as_of:
                dated.append((_instant_key(obs, day), obs))
        if not dated:
            if undated and clause.window_days is None:
                return self._judge_observation(clause, record, undated[0], None)
            if undated:
                return Outcome(UNKNOWN, f"{what}: only undated results", tuple(map(_ref, undated)))
            return Outcome(clause.when_absent, f"no {what} result")
        dated.sort(key=lambda item: item[0], reverse=True)
        (newest_day, _), newest = dated[0]
        age_days = (self.as_of - newest_day).days
        if clause.window_days is not None and age_days > clause.window_days:
            return Outcome(
                UNKNOWN,
                f"most recent {what} is {age_days} days old (needs one within {clause.window_days} days)",
                (_ref(newest),),
            )
        return self._judge_observation(clause, record, newest, newest_day)

    def _judge_observation(
        self, clause: ObservationClause, record: PatientRecord, obs: dict[str, Any], day: date | None
    ) -> Outcome:
        what = clause.label or "result"
        when = f" on {day.isoformat()}" if day else ""
        evidence = (_ref(obs),)
        if clause.room_air:
            oxygen = self._supplemental_oxygen(obs, self.definition.concepts[clause.room_air])
            if oxygen is not False:
                note = "taken on supplemental oxygen" if oxygen else "oxygen delivery not readable"
                return Outcome(UNKNOWN, f"{what}{when} {note}, not a room-air value", evidence)
        if clause.expect is not None:
            return self._judge_coded(clause, obs, f"{what}{when}", evidence)
        measured = self._measured(obs, clause, record)
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
        via = _via([obs], *(self.definition.concepts[n] for n in clause.concepts))
        return Outcome(result, f"{what} {shown}{when} ({clause.comparator} {threshold_text}){via}", evidence)

    def _measured(
        self, obs: dict[str, Any], clause: ObservationClause, record: PatientRecord
    ) -> tuple[float, float, str, str] | str:
        """(lowest, highest possible value in the threshold's terms, shown value, threshold) or why not."""
        molar_mass = self.definition.analytes[clause.analyte].molar_mass if clause.analyte else None
        value, unit, comparator = _numeric_value(obs)
        if value is None:
            return "no numeric value"
        low, high = _interval(value, comparator)
        shown = f"{comparator or ''}{_fmt(value)} {unit or ''}".strip()
        if clause.relative_to == "uln":
            uln = _upper_limit(obs, record.patient, self.as_of)
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
        self, clause: ObservationClause, obs: dict[str, Any], what: str, evidence: tuple[str, ...]
    ) -> Outcome:
        concepts = self.definition.concepts
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

    def _supplemental_oxygen(self, obs: dict[str, Any], oxygen: ConceptSet) -> bool | None:
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

    # --- medications, procedures, immunizations --------------------------------------------------

    def _medication(self, clause: MedicationClause, record: PatientRecord) -> Outcome:
        sets = [self.definition.concepts[name] for name in clause.concepts]
        routes = self.definition.concepts[clause.exclude_routes] if clause.exclude_routes else None
        present: list[dict[str, Any]] = []
        uncertain: list[dict[str, Any]] = []
        past: list[dict[str, Any]] = []
        for resource in (*record.of_type("MedicationRequest"), *record.of_type("MedicationStatement")):
            concept = self._medication_concept(resource, record)
            if not any(s.matching_coding(concept) for s in sets):
                continue
            state = self._medication_state(resource, clause.state)
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
            via = _via(present, *sets, element="medicationCodeableConcept")
            return Outcome(MET, f"{what} on record{via}", tuple(map(_ref, present)))
        if uncertain:
            return Outcome(
                UNKNOWN, f"{what} on record, status, dates or route unclear", tuple(map(_ref, uncertain))
            )
        if past:
            return Outcome(
                clause.when_absent, f"{what} on record but not in the window", tuple(map(_ref, past))
            )
        return Outcome(clause.when_absent, "no matching record")

    def _medication_concept(self, resource: dict[str, Any], record: PatientRecord) -> dict[str, Any]:
        if "medicationCodeableConcept" in resource:
            return resource["medicationCodeableConcept"] or {}
        ref = (resource.get("medicationReference") or {}).get("reference")
        if ref:
            contained = ref[1:] if ref.startswith("#") else None
            if contained:
                for item in resource.get("contained") or ():
                    if item.get("id") == contained:
                        return self._maps.translate_concept(item.get("code") or {})
            from .record import normalise_reference

            medication = record.medications.get(normalise_reference(ref) or "")
            if medication:
                return self._maps.translate_concept(medication.get("code") or {})
        return {}

    def _medication_state(self, resource: dict[str, Any], wanted: Any) -> str | None:
        """present / uncertain / past for the wanted state, or None when the record does not count."""
        status = resource.get("status")
        if status in ("entered-in-error", "cancelled", "not-taken", "draft"):
            return None
        started = day_of(resource.get("authoredOn")) or day_of(
            (resource.get("effectivePeriod") or {}).get("start")
        )
        started = started or day_of(resource.get("effectiveDateTime"))
        if started is not None and started > self.as_of:
            return None  # future-dated
        end = _medication_end(resource)
        ended_before = end is not None and end < self.as_of
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
        days = (self.as_of - end).days
        if 0 <= days <= wanted.ended_within_days:
            return "present"
        return "past"

    def _procedure(self, clause: ProcedureClause, record: PatientRecord) -> Outcome:
        sets = [self.definition.concepts[name] for name in clause.concepts]
        category = self.definition.concepts[clause.category] if clause.category else None
        wording = self._wording(clause.text_signals)
        present, uncertain, worded = [], [], []
        for procedure in record.of_type("Procedure"):
            if procedure.get("status") in _IGNORED_PROCEDURE:
                continue
            by_code = any(s.matching_coding(_code_of(procedure)) for s in sets)
            by_category = category is not None and category.matching_coding(procedure.get("category"))
            named = not (by_code or by_category) and wording.quote(procedure.get("code")) is not None
            if not (by_code or by_category or named):
                continue
            day = effective_day(procedure)
            if day is not None and day > self.as_of:
                continue
            in_window = clause.within_days is None or (
                day is not None and (self.as_of - day).days <= clause.within_days
            )
            if named:  # a name that suggests it, no code that says so: for review, never a match
                if in_window or day is None:
                    worded.append(procedure)
            elif day is None and clause.within_days is not None:
                uncertain.append(procedure)
            elif in_window:
                present.append(procedure)
        outcome = self._presence(clause.label, clause.when_absent, present, uncertain)
        if outcome.result == MET or not worded:
            return outcome
        quoted = wording.quote(worded[0].get("code"))
        what = clause.label or "matching procedure"
        return Outcome(
            UNKNOWN,
            f'{what}: a procedure named "{quoted}" without a recognised code; needs review',
            (*outcome.evidence, *map(_ref, worded)),
        )

    def _wording(self, patterns: tuple[str, ...]) -> Wording:
        found = self._wordings.get(patterns)
        if found is None:
            found = self._wordings[patterns] = Wording(patterns)
        return found

    def _immunization(self, clause: ImmunizationClause, record: PatientRecord) -> Outcome:
        present, uncertain = [], []
        for immunization in record.of_type("Immunization"):
            if immunization.get("status") in ("not-done", "entered-in-error"):
                continue
            day = day_of(immunization.get("occurrenceDateTime"))
            if day is None:
                uncertain.append(immunization)
            elif day <= self.as_of and (self.as_of - day).days <= clause.within_days:
                present.append(immunization)
        return self._presence(clause.label, clause.when_absent, present, uncertain)

    @staticmethod
    def _presence(
        label: str | None, when_absent: Tri, present: list[dict[str, Any]], uncertain: list[dict[str, Any]]
    ) -> Outcome:
        what = label or "matching record"
        if present:
            return Outcome(MET, f"{what} on record", tuple(map(_ref, present)))
        if uncertain:
            return Outcome(UNKNOWN, f"{what}: record with unclear date", tuple(map(_ref, uncertain)))
        return Outcome(when_absent, "no matching record")


# --- helpers ------------------------------------------------------------------------------------


def _translated(record: PatientRecord, maps: ConceptMaps) -> PatientRecord:
    """The record with local codes translated by the site's ConceptMaps (resources copied, not changed)."""
    resources = {
        kind: [maps.translate_resource(r) for r in items] for kind, items in record.resources.items()
    }
    return PatientRecord(
        key=record.key, patient=record.patient, resources=resources, medications=record.medications
    )


def _suspected(condition: dict[str, Any]) -> bool:
    return _status_code(condition.get("verificationStatus")) in _SUSPECTED_VERIFICATION


def _verification(condition: dict[str, Any]) -> str:
    return _status_code(condition.get("verificationStatus")) or "unconfirmed"


def _via(found: list[dict[str, Any]], *sets: ConceptSet, element: str = "code") -> str:
    """Where a match came through a site's ConceptMap: which local code, which map."""
    for resource in found:
        for coding in _code_of(resource, element).get("coding") or ():
            via = translated_from(coding)
            if via and any(s.matches_coding(coding) for s in sets):
                return f" (local code {via})"
    return ""


def _reads_patient(clause: Clause) -> bool:
    """Whether a rule's answer depends on the Patient resource itself (age, death, sex)."""
    if clause.only_for_sex or clause.kind in ("age", "alive"):
        return True
    return isinstance(clause, AllOf | AnyOf) and any(_reads_patient(c) for c in clause.clauses)


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
        kind = _status_code(ref_range.get("type"))
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


def iter_results(screener: Screener, records: Iterable[PatientRecord]) -> Iterable[PatientResult]:
    for record in records:
        yield screener.screen(record)
