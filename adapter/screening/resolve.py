"""What would settle each unknown criterion, derived from the criteria definition.

For an ``unknown`` criterion the rule's leaves are evaluated on the patient's record, and only the
leaves still unknown (inside branches still undecided) become ``needs``: an observation leaf asks for
a result of its concept sets dated on or after the as-of date minus its window; a condition,
medication, procedure or immunization leaf asks for the status or dates of the record found, or for a
person's review when the definition says presence needs review; a manual leaf says who decides. A new
criterion gets its ``resolve`` from its clauses, with no code here.

Codes are named by concept set (``concepts``), listed once in the report's ``concepts`` (explicit codes
plus any other matching rule of the set, e.g. ranges or descendant roots), not once per patient.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any, ClassVar

from mappings.clinical.dates import day_of, effective_day
from mappings.clinical.record import PatientRecord
from mappings.clinical.tri import UNKNOWN, Tri, all_of, any_of
from mappings.concepts import ConceptSet
from mappings.criteria import CriteriaDefinition, Criterion
from mappings.kinds.age import AgeClause
from mappings.kinds.base import Clause, Outcome
from mappings.kinds.combine import AllOf, AnyOf
from mappings.kinds.condition import ConditionClause
from mappings.kinds.diagnosis import DiagnosisClause, phrases
from mappings.kinds.immunization import ImmunizationClause
from mappings.kinds.manual import ManualClause
from mappings.kinds.medication import MedicationClause
from mappings.kinds.observation import ObservationClause
from mappings.kinds.procedure import ProcedureClause

from .engine import Screener
from .results import ConceptInfo, CriterionResult, DecidedBy, Need, PatientResult, Resolve
from .wording import prose, threshold

_DAYS_OLD = re.compile(r"is (\d+) days old")
# Manual clauses decided with the patient or guardian (consent visit) rather than by the investigator.
_CONSENT_WORDS = ("consent", "agree", "comply", "willing", "voluntar")
_DECIDERS: dict[DecidedBy, str] = {
    "data": "collect",
    "investigator": "investigator decides",
    "consent": "at the consent visit (patient or guardian)",
}


def decided_by(clause: ManualClause, criterion: Criterion) -> DecidedBy:
    label = (clause.label or "").lower()
    return "consent" if any(word in label for word in _CONSENT_WORDS) else "investigator"


class Resolver:
    """Builds ``resolve`` entries for one definition and as-of date (one per screening run)."""

    _by_screener: ClassVar[weakref.WeakKeyDictionary[Screener, Resolver]] = weakref.WeakKeyDictionary()

    def __init__(self, definition: CriteriaDefinition, as_of: date) -> None:
        self.definition = definition
        self.as_of = as_of
        self._criteria = {c.id: c for c in definition.criteria}
        # Shared result instances (the engine's answers for records with no readable data) resolve once.
        self._shared: dict[int, tuple[CriterionResult, CriterionResult]] = {}
        self._resolves: dict[tuple[Any, ...], Resolve] = {}

    @classmethod
    def for_screener(cls, screener: Screener) -> Resolver:
        found = cls._by_screener.get(screener)
        if found is None:
            found = cls._by_screener[screener] = cls(screener.definition, screener.as_of)
        return found

    # --- with a record (exact: only the leaves still unknown) ------------------------------------

    def attach(self, screener: Screener, record: PatientRecord, result: PatientResult) -> PatientResult:
        resolved = self._resolved
        criteria = [c if c.result != UNKNOWN else resolved(screener, record, c) for c in result.criteria]
        return result.model_copy(
            update={"criteria": criteria, "latest_data": latest_data(record, self.as_of)}
        )

    def _resolved(
        self, screener: Screener, record: PatientRecord, result: CriterionResult
    ) -> CriterionResult:
        if result.result != UNKNOWN or result.resolve is not None or result.id not in self._criteria:
            return result
        cached = self._shared.get(id(result))
        if cached is not None and cached[0] is result:
            return cached[1]
        criterion = self._criteria[result.id]
        leaves: list[tuple[Clause, Outcome]] = []
        if isinstance(criterion.rule, AllOf | AnyOf):
            self._unknown_leaves(criterion.rule, screener, record, leaves)
        else:  # a one-clause rule: the criterion's own outcome is the leaf's
            leaves.append((criterion.rule, Outcome(result.result, result.reason, tuple(result.evidence))))
        # The same leaves with the same reasons resolve the same way: many patients share them.
        key = (result.id, tuple((id(c), o.reason, bool(o.evidence)) for c, o in leaves))
        resolve = self._resolves.get(key)
        if resolve is None:
            resolve = self.resolve(criterion, leaves)
            if len(self._resolves) < 50_000:
                self._resolves[key] = resolve
        resolved = result.model_copy(update={"resolve": resolve})
        if screener._bare_results.get(result.id) is result:
            self._shared[id(result)] = (result, resolved)  # keeps `result` alive, so its id stays unique
        return resolved

    def _unknown_leaves(
        self, clause: Clause, screener: Screener, record: PatientRecord, out: list[tuple[Clause, Outcome]]
    ) -> Tri:
        if isinstance(clause, AllOf | AnyOf):
            mark = len(out)
            results = [self._unknown_leaves(child, screener, record, out) for child in clause.clauses]
            result = (all_of if isinstance(clause, AllOf) else any_of)(results)
            if result != UNKNOWN:
                del out[mark:]  # a decided branch needs nothing
            return result
        outcome = (
            Outcome(UNKNOWN, "") if isinstance(clause, ManualClause) else screener._evaluate(clause, record)
        )
        if outcome.result == UNKNOWN:
            out.append((clause, outcome))
        return outcome.result

    # --- without a record (every leaf that could be unknown) --------------------------------------

    def fallback(self, result: PatientResult) -> PatientResult:
        """For results screened elsewhere without ``resolve``: every leaf that can be unknown is named."""
        criteria = []
        for c in result.criteria:
            criterion = self._criteria.get(c.id)
            if c.result != UNKNOWN or c.resolve is not None or criterion is None:
                criteria.append(c)
                continue
            leaves = [(leaf, Outcome(UNKNOWN, "")) for leaf in criterion.leaves() if leaf.kind != "alive"]
            criteria.append(c.model_copy(update={"resolve": self.resolve(criterion, leaves)}))
        return result.model_copy(update={"criteria": criteria})

    # --- building ---------------------------------------------------------------------------------

    def resolve(self, criterion: Criterion, leaves: Sequence[tuple[Clause, Outcome]]) -> Resolve:
        needs = [self.need(criterion, clause, outcome) for clause, outcome in leaves]
        if not needs:  # cannot happen for an unknown rule, but never leave an unknown unexplained
            needs = [Need(kind="judgement", label=criterion.id, decidedBy="investigator", text="review")]
        rule = criterion.rule
        any_settles = (criterion.type == "inclusion" and isinstance(rule, AnyOf)) or (
            criterion.type == "exclusion" and isinstance(rule, AllOf)
        )
        return Resolve(
            text=sentence(needs, any_settles), settles="any" if any_settles else "all", needs=needs
        )

    def need(self, criterion: Criterion, clause: Clause, outcome: Outcome) -> Need:
        label = clause.label or clause.kind
        found = bool(outcome.evidence)
        if isinstance(clause, ManualClause):
            return Need(kind="judgement", label=label, decidedBy=decided_by(clause, criterion), text=label)
        if isinstance(clause, ObservationClause):
            return self._observation(criterion, clause, outcome, label)
        if isinstance(clause, AgeClause):
            return Need(kind="birth-date", label="birth date", decidedBy="data", text="a complete birth date")
        if isinstance(clause, DiagnosisClause):
            return self._diagnosis(clause, outcome)
        if isinstance(clause, ConditionClause):
            if found and clause.when_present == UNKNOWN and "unclear" not in outcome.reason:
                return Need(
                    kind="judgement",
                    label=label,
                    decidedBy="investigator",
                    concepts=list(clause.concepts),
                    text=f"review the {label} on record",
                )
            return Need(
                kind="condition",
                label=label,
                decidedBy="data",
                concepts=list(clause.concepts),
                text=f"clinical status and dates of the {label} record",
            )
        if isinstance(clause, MedicationClause):
            return Need(
                kind="medication",
                label=label,
                decidedBy="data",
                concepts=list(clause.concepts),
                text=f"status, end date and route of the {label} record",
            )
        if isinstance(clause, ProcedureClause | ImmunizationClause):
            concepts = list(getattr(clause, "concepts", ()) or ()) + [
                c for c in [getattr(clause, "category", None)] if c
            ]
            kind = "procedure" if isinstance(clause, ProcedureClause) else "immunization"
            return Need(
                kind=kind, label=label, decidedBy="data", concepts=concepts, text=f"date of the {label}"
            )
        return Need(kind=clause.kind, label=label, decidedBy="data", text=label)

    def _observation(
        self, criterion: Criterion, clause: ObservationClause, outcome: Outcome, label: str
    ) -> Need:
        since = self.as_of - timedelta(days=clause.window_days) if clause.window_days is not None else None
        if clause.expect is not None:
            wanted = (
                clause.expect if clause.expect in ("positive", "negative") else self._display(clause.expect)
            )
            test = f"{wanted} {'excludes' if criterion.type == 'exclusion' else 'needed'}"
        else:
            shown = threshold(clause.comparator, clause.value, clause.unit, clause.relative_to)
            test = f"{shown} {'excludes' if criterion.type == 'exclusion' else 'needed'}"
        text = f"{label} dated {since.isoformat()} or later" if since else f"a {label} result"
        if clause.room_air and "room air" not in label:
            text += ", taken on room air"
        if clause.only_for_sex:
            text += f" ({clause.only_for_sex} patients)"
        stale = _DAYS_OLD.search(outcome.reason)
        if stale:
            text += f" (latest {(self.as_of - timedelta(days=int(stale[1]))).isoformat()})"
        elif outcome.evidence and outcome.reason:
            text += f" (on record: {prose(outcome.reason)})"
        return Need(
            kind="observation",
            label=label,
            decidedBy="data",
            concepts=list(clause.concepts),
            since=since,
            test=test,
            text=text,
        )

    def _diagnosis(self, clause: DiagnosisClause, outcome: Outcome) -> Need:
        reason = outcome.reason
        say = phrases(clause, self.definition.concepts)  # the study's own words (criteria.yaml)
        concepts: list[str] = []
        parts = []
        if "lineage" in reason or not reason:
            concepts.append(clause.lineage)
            parts.append(f"{say.lineage} of the {say.disease} confirmed and coded")
        if say.status_missing in reason or not reason:
            concepts += list(clause.status)
            parts.append(f"{say.status_codes} status coded")
        if not parts:
            parts.append(f"the {say.disease} diagnosis coded with lineage and status")
            concepts = [clause.lineage, *clause.status]
        return Need(
            kind="diagnosis", label="diagnosis", decidedBy="data", concepts=concepts, text="; ".join(parts)
        )

    def _display(self, name: str) -> str:
        concept = self.definition.concepts.get(name)
        return concept.display if concept else name


def sentence(needs: Iterable[Need], any_settles: bool) -> str:
    """``Collect: platelets dated 2026-11-16 or later. Investigator decides: ...``."""
    groups: dict[str, list[str]] = {}
    for need in needs:
        groups.setdefault(need.decided_by, []).append(need.text)
    parts = []
    for who in ("data", "investigator", "consent"):
        texts = list(dict.fromkeys(groups.get(who, [])))
        if not texts:
            continue
        joiner = ", or " if any_settles and who == "data" else "; "
        lead = (
            "Collect any of"
            if any_settles and who == "data" and len(texts) > 1
            else _DECIDERS[who].capitalize()
        )
        parts.append(f"{lead}: {joiner.join(texts)}.")
    return " ".join(parts)


def collect_next(result: PatientResult) -> list[str]:
    """The data to collect for a patient, each once, in criterion order (what a coordinator asks for)."""
    items: dict[str, None] = {}
    for c in result.criteria:
        if c.resolve is None:
            if c.result == UNKNOWN:  # screened without resolve: never shown as nothing to collect
                items[f"what settles {c.id} ({c.reason})"] = None
            continue
        texts = [need.text for need in c.resolve.needs if need.decided_by == "data"]
        if c.resolve.settles == "any" and len(texts) > 1:
            texts = [", or ".join(texts)]  # any one of them settles it: one thing to collect
        items.update(dict.fromkeys(texts))
    return list(items)


def judgements(result: PatientResult) -> list[tuple[str, DecidedBy]]:
    found: dict[tuple[str, DecidedBy], None] = {}
    for c in result.criteria:
        for need in c.resolve.needs if c.resolve else ():
            if need.decided_by != "data":
                found[(need.text, need.decided_by)] = None
    return list(found)


def latest_data(record: PatientRecord, as_of: date) -> date | None:
    """The most recent day (not after the as-of date) of any clinical resource in the record."""
    latest: date | None = None
    for items in record.resources.values():
        for resource in items:
            day = (
                effective_day(resource)
                or day_of(resource.get("onsetDateTime"))
                or day_of(resource.get("recordedDate"))
            )
            if day is not None and day <= as_of and (latest is None or day > latest):
                latest = day
    return latest


def with_resolve(screener: Screener, record: PatientRecord, result: PatientResult) -> PatientResult:
    """The screening result with ``resolve`` on every unknown criterion (the one call sources make)."""
    return Resolver.for_screener(screener).attach(screener, record, result)


def concept_infos(
    definition: CriteriaDefinition, patients: Iterable[PatientResult]
) -> dict[str, ConceptInfo]:
    """The concept sets the report's ``resolve`` entries name, with their codes and other rules."""
    names: dict[str, None] = {}
    seen: set[int] = set()  # resolve entries are shared between patients: read each once
    for patient in patients:
        for c in patient.criteria:
            if c.resolve is None or id(c.resolve) in seen:
                continue
            seen.add(id(c.resolve))
            for need in c.resolve.needs:
                names.update(dict.fromkeys(need.concepts))
    return {n: concept_info(definition.concepts[n]) for n in names if n in definition.concepts}


def concept_info(concept: ConceptSet) -> ConceptInfo:
    codes = [{"system": c.system, "code": c.code, "display": c.display} for c in concept.codes]
    rules: list[dict[str, Any]] = []
    # Any other matching rule the set has (ranges, prefixes, exclusions, roots...), named by its field.
    for name in type(concept).model_fields:
        if name in ("name", "display", "codes"):
            continue
        value = getattr(concept, name)
        for item in value if isinstance(value, tuple | list) else ():
            dumped = item.model_dump(mode="json") if hasattr(item, "model_dump") else {"value": str(item)}
            rules.append({"rule": name, **dumped})
    return ConceptInfo(display=concept.display, codes=codes, rules=rules)
