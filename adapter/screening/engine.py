"""The screening engine: one patient record + the criteria definition -> a result per criterion.

The Screener orchestrates; each kind of clause evaluates itself (``mappings.kinds``, one module per
kind, listed in ``mappings.kinds.registry``). Rules that hold everywhere (see the criteria file for
per-criterion decisions):
- A missing fact is ``unknown``, never a silent exclusion. Condition/procedure/medication exclusions
  with no matching record are ``not-met``; a needed measurement with no usable result is ``unknown``.
- Hygiene: Observations entered-in-error/cancelled or dated after the as-of date are ignored;
  Conditions refuted/entered-in-error are ignored; Procedures not-done/entered-in-error are ignored.
- The most recent result decides; a result outside the window is ``unknown``, not a pass or a fail.
- A unit that cannot be converted gives ``unknown``.
- A clause for one sex only gives its ``otherwise`` result for the other sex; an unknown or other
  gender is screened as the gated sex.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import MET, NOT_MET, UNKNOWN
from mappings.criteria import CriteriaDefinition, Criterion
from mappings.kinds.base import Clause, Context, Outcome
from mappings.kinds.registry import kind_of, kinds
from mappings.terminology.conceptmap import ConceptMaps

from .reads import ScreeningReads
from .results import CriterionResult, PatientResult


class Screener:
    """Evaluates patient records against one criteria definition at one as-of date."""

    def __init__(self, definition: CriteriaDefinition, as_of: date) -> None:
        self.definition = definition
        self.as_of = as_of
        self.manual_reason = definition.manual_review_reason
        self._reads = ScreeningReads(definition)
        self._maps = definition.concept_maps
        self._context = Context(definition, as_of, self._evaluate)
        self._reads_patient = {c.id for c in definition.criteria if _reads_patient(c.rule)}
        self._bare_results: dict[str, CriterionResult] = {}
        self._kinds = {kind.name: kind for kind in kinds()}

    # --- public ----------------------------------------------------------------------------------

    def screen(self, record: PatientRecord) -> PatientResult:
        self._context.new_record()
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
        outcome = self._evaluate(criterion.rule, record)
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

    def _evaluate(self, clause: Clause, record: PatientRecord) -> Outcome:
        kind = self._kinds[clause.kind]
        if not kind.combination:
            gated = _sex_gate(clause, record)
            if gated is not None:
                return gated
        return kind.evaluate(clause, self._context, record)


# --- helpers ------------------------------------------------------------------------------------


def _sex_gate(clause: Clause, record: PatientRecord) -> Outcome | None:
    wanted = clause.only_for_sex
    if not wanted:
        return None
    gender = record.patient.get("gender")
    # Unknown or other gender is screened as the gated sex: missing data must not pass a check.
    if gender in ("male", "female") and gender != wanted:
        return Outcome(clause.otherwise or UNKNOWN, f"not applicable ({gender})", (record.key,))
    return None


def _translated(record: PatientRecord, maps: ConceptMaps) -> PatientRecord:
    """The record with local codes translated by the site's ConceptMaps (resources copied, not changed)."""
    resources = {
        kind: [maps.translate_resource(r) for r in items] for kind, items in record.resources.items()
    }
    return PatientRecord(
        key=record.key, patient=record.patient, resources=resources, medications=record.medications
    )


def _reads_patient(clause: Clause) -> bool:
    """Whether a rule's answer depends on the Patient resource itself (age, death, sex)."""
    if clause.only_for_sex or kind_of(clause).reads(clause).patient:
        return True
    return any(_reads_patient(c) for c in getattr(clause, "clauses", ()))


def iter_results(screener: Screener, records: Iterable[PatientRecord]) -> Iterable[PatientResult]:
    for record in records:
        yield screener.screen(record)
