"""The disease under study: lineage coded (met), another lineage (not met), no lineage or only words
or a suspicion (unknown), plus relapsed/refractory status. Wording and broader codes are never read as
"no disease" (``DiagnosisSigns``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol

from pydantic import field_validator

from mappings.clinical.record import PatientRecord
from mappings.clinical.signs import DiseaseSigns
from mappings.clinical.tri import MET, NOT_MET, UNKNOWN, all_of
from mappings.concepts import ConceptSet, patterns

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
    suspected,
    verification,
    via,
)
from .publish import DIAGNOSIS, concept, value_concept


class DiagnosisClause(Clause):
    kind: Literal["diagnosis"]
    lineage: str
    unknown_lineage: str
    other_lineage: str | None = None
    status: tuple[str, ...]
    # Regular expressions for wording that names the disease in a Condition's text or a display: such
    # a Condition without a recognised code makes the diagnosis unknown, never not-met.
    text_signals: tuple[str, ...] = ()

    @field_validator("text_signals")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return patterns(value)

    def concept_names(self) -> Iterator[str]:
        yield from (self.lineage, self.unknown_lineage, *self.status)
        if self.other_lineage:
            yield self.other_lineage


class _WithDiagnosis(Protocol):
    @property
    def concepts(self) -> Mapping[str, ConceptSet]: ...
    def diagnosis_clause(self) -> DiagnosisClause: ...


class DiagnosisSigns(DiseaseSigns):
    """The signs of the disease a criteria definition's diagnosis clause names."""

    def __init__(self, definition: _WithDiagnosis) -> None:
        clause = definition.diagnosis_clause()
        super().__init__(clause.text_signals, _recognised(clause, definition.concepts))


def _recognised(clause: DiagnosisClause, concepts: Mapping[str, ConceptSet]) -> list[ConceptSet]:
    """The sets whose codes say the disease: the lineages that decide and the status codes."""
    return [concepts[n] for n in dict.fromkeys([clause.lineage, clause.unknown_lineage, *clause.status])]


def evaluate(clause: DiagnosisClause, ctx: Context, record: PatientRecord) -> Outcome:
    concepts = ctx.concepts
    signs: DiseaseSigns = ctx.shared(
        ("diagnosis-signs", id(clause)),
        lambda: DiseaseSigns(clause.text_signals, _recognised(clause, concepts)),
    )
    lineage, unknown = concepts[clause.lineage], concepts[clause.unknown_lineage]
    other = concepts[clause.other_lineage] if clause.other_lineage else None
    statuses = [concepts[name] for name in clause.status]
    t_cell, b_cell, unspecified, rr, doubtful = [], [], [], [], []
    hints: list[tuple[str, dict[str, Any]]] = []
    for condition in ctx.conditions(record):
        codes = [code_of(condition)] + [
            ext.get("valueCodeableConcept") or {} for ext in condition.get("extension") or ()
        ]
        if suspected(condition):
            if any(s.matching_coding(c) for s in (lineage, unknown, *statuses) for c in codes) or (
                signs.any_sign(codes[0])
            ):
                doubtful.append(condition)
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
        elif not coded and not signs.recognised(codes[0]):
            hint = signs.broader_code(codes[0])
            if hint:
                hints.append((f"a broader code ({hint})", condition))
            else:
                words = signs.wording(codes[0])
                if words:
                    hints.append((f'ALL named in text only ("{words}")', condition))
    if t_cell:
        line = Outcome(MET, "T-lineage ALL recorded" + via(t_cell, lineage), tuple(map(ref, t_cell)))
    elif b_cell and (hints or doubtful):
        # B lineage coded, yet another record speaks of ALL in words or as a suspicion: a reviewer
        # decides, the text is not ignored.
        found = [c for _, c in hints] + doubtful
        return Outcome(
            UNKNOWN,
            "ALL recorded with B lineage, but another record names ALL without a recognised code: "
            "needs review",
            tuple(dict.fromkeys(map(ref, [*b_cell, *found]))),
        )
    elif b_cell:
        line = Outcome(NOT_MET, "ALL recorded with B lineage, no T-lineage record", tuple(map(ref, b_cell)))
    elif unspecified or rr:
        found = unspecified or rr
        line = Outcome(
            UNKNOWN,
            "ALL recorded without lineage (T lineage not established)" + via(found, unknown, *statuses),
            tuple(map(ref, found)),
        )
    elif doubtful or hints:
        parts = [f"{what}, not a recognised code" for what, _ in hints[:3]]
        if doubtful:
            parts.insert(0, f"ALL suspected only ({verification(doubtful[0])})")
        refs = tuple(dict.fromkeys(ref(c) for c in (*doubtful, *(c for _, c in hints))))
        return Outcome(UNKNOWN, "; ".join(parts) + ": needs review", refs)
    else:
        return Outcome(NOT_MET, "no record of acute lymphoblastic leukaemia")
    if rr:
        status = Outcome(MET, "relapsed/refractory disease coded", tuple(map(ref, rr)))
    else:
        status = Outcome(UNKNOWN, "no relapse or refractory code")
    result = all_of((line.result, status.result))
    reason = f"{line.reason}; {status.reason}"
    if doubtful and result != MET:
        reason += f"; a suspected ALL diagnosis also on record ({verification(doubtful[0])})"
    evidence = line.evidence + status.evidence + tuple(map(ref, doubtful))
    return Outcome(result, reason, tuple(dict.fromkeys(evidence)))


def reads(clause: DiagnosisClause) -> Reads:
    return Reads(resource_types=("Condition",), text_signals=clause.text_signals)


def characteristic(clause: DiagnosisClause, criteria: Definitions) -> Characteristic:
    lineage = criteria.concept(clause.lineage)
    status = " or ".join(criteria.concept(s).display for s in clause.status)
    suffix = f"; status: {status}" if status else ""
    return concept(DIAGNOSIS, "Diagnosis"), {
        "valueCodeableConcept": value_concept([lineage], criteria, suffix)
    }


KIND = Kind("diagnosis", DiagnosisClause, evaluate, reads, characteristic)
