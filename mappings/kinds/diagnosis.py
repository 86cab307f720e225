"""The disease under study: lineage coded (met), another lineage (not met), no lineage or only words
or a suspicion (unknown), plus relapsed/refractory status. Wording and broader codes are never read as
"no disease" (``DiagnosisSigns``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import field_validator

from mappings.clinical.record import PatientRecord
from mappings.clinical.signs import DiseaseSigns
from mappings.clinical.tri import MET, NOT_MET, UNKNOWN, all_of
from mappings.concepts import ConceptSet, Model, patterns

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


class DiagnosisWording(Model):
    """How the reasons name the disease: study wording lives in criteria.yaml, never in code. Each
    term left out is taken from the concept sets' displays (or a neutral phrase)."""

    disease: str = "the disease"  # short name: "{disease} recorded without lineage"
    disease_name: str | None = None  # "no record of {disease_name}" (default: disease)
    lineage: str | None = None  # "({lineage} not established)" (default: the lineage set's display)
    lineage_adjective: str | None = None  # "{lineage_adjective} {disease} recorded" (default: lineage)
    other_lineage: str | None = None  # "{disease} recorded with {other_lineage}" (default: its display)
    status: str | None = None  # "{status} coded" (default: the status sets' displays)
    status_codes: str | None = None  # "no {status_codes} code" (default: status)


@dataclass(frozen=True)
class Phrases:
    """The diagnosis reasons' words, every term resolved."""

    disease: str
    disease_name: str
    lineage: str
    lineage_adjective: str
    other_lineage: str
    status: str
    status_codes: str

    @property
    def status_missing(self) -> str:
        return f"no {self.status_codes} code"


class DiagnosisClause(Clause):
    kind: Literal["diagnosis"]
    lineage: str
    unknown_lineage: str
    other_lineage: str | None = None
    status: tuple[str, ...]
    # Regular expressions for wording that names the disease in a Condition's text or a display: such
    # a Condition without a recognised code makes the diagnosis unknown, never not-met.
    text_signals: tuple[str, ...] = ()
    wording: DiagnosisWording = DiagnosisWording()

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


def phrases(clause: DiagnosisClause, concepts: Mapping[str, ConceptSet]) -> Phrases:
    """The clause's wording with every missing term taken from the concept sets' displays."""
    words = clause.wording
    lineage = words.lineage or concepts[clause.lineage].display
    other = concepts[clause.other_lineage].display if clause.other_lineage else "another lineage"
    status = words.status or " or ".join(concepts[name].display for name in clause.status) or "status"
    return Phrases(
        disease=words.disease,
        disease_name=words.disease_name or words.disease,
        lineage=lineage,
        lineage_adjective=words.lineage_adjective or lineage,
        other_lineage=words.other_lineage or other,
        status=status,
        status_codes=words.status_codes or status,
    )


def evaluate(clause: DiagnosisClause, ctx: Context, record: PatientRecord) -> Outcome:
    concepts = ctx.concepts
    say: Phrases = ctx.shared(("diagnosis-phrases", id(clause)), lambda: phrases(clause, concepts))
    disease = say.disease
    signs: DiseaseSigns = ctx.shared(
        ("diagnosis-signs", id(clause)),
        lambda: DiseaseSigns(clause.text_signals, _recognised(clause, concepts)),
    )
    lineage, unknown = concepts[clause.lineage], concepts[clause.unknown_lineage]
    other = concepts[clause.other_lineage] if clause.other_lineage else None
    statuses = [concepts[name] for name in clause.status]
    in_lineage, other_lineage, unspecified, rr, doubtful = [], [], [], [], []
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
            in_lineage.append(condition)
        elif other is not None and any(other.matching_coding(c) for c in codes):
            other_lineage.append(condition)
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
                    hints.append((f'{disease} named in text only ("{words}")', condition))
    if in_lineage:
        line = Outcome(
            MET,
            f"{say.lineage_adjective} {disease} recorded" + via(in_lineage, lineage),
            tuple(map(ref, in_lineage)),
        )
    elif other_lineage and (hints or doubtful):
        # The other lineage coded, yet another record names the disease in words or as a suspicion: a reviewer
        # decides, the text is not ignored.
        found = [c for _, c in hints] + doubtful
        return Outcome(
            UNKNOWN,
            f"{disease} recorded with {say.other_lineage}, but another record names {disease} without a "
            "recognised code: needs review",
            tuple(dict.fromkeys(map(ref, [*other_lineage, *found]))),
        )
    elif other_lineage:
        line = Outcome(
            NOT_MET,
            f"{disease} recorded with {say.other_lineage}, no {say.lineage_adjective} record",
            tuple(map(ref, other_lineage)),
        )
    elif unspecified or rr:
        found = unspecified or rr
        line = Outcome(
            UNKNOWN,
            f"{disease} recorded without lineage ({say.lineage} not established)"
            + via(found, unknown, *statuses),
            tuple(map(ref, found)),
        )
    elif doubtful or hints:
        parts = [f"{what}, not a recognised code" for what, _ in hints[:3]]
        if doubtful:
            parts.insert(0, f"{disease} suspected only ({verification(doubtful[0])})")
        refs = tuple(dict.fromkeys(ref(c) for c in (*doubtful, *(c for _, c in hints))))
        return Outcome(UNKNOWN, "; ".join(parts) + ": needs review", refs)
    else:
        return Outcome(NOT_MET, f"no record of {say.disease_name}")
    if rr:
        status = Outcome(MET, f"{say.status} coded", tuple(map(ref, rr)))
    else:
        status = Outcome(UNKNOWN, say.status_missing)
    result = all_of((line.result, status.result))
    reason = f"{line.reason}; {status.reason}"
    if doubtful and result != MET:
        reason += f"; a suspected {disease} diagnosis also on record ({verification(doubtful[0])})"
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
