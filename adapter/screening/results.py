"""Screening results: the stable JSON contract other tools read."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from mappings.clinical.tri import Tri

if TYPE_CHECKING:
    from mappings.criteria import CriteriaDefinition

# "error": the record could not be screened (malformed data or a bug); never a candidate, never flagged.
Status = Literal["candidate", "not-eligible", "error"]
DecidedBy = Literal["data", "investigator", "consent"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Optional(_Model):
    """New fields of the contract are left out while unset, so older readers see the old shape."""

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self._omit_when_none:
                key = type(self).model_fields[name].alias or name if info.by_alias else name
                if data.get(key) is None:
                    data.pop(key, None)
        return data

    _omit_when_none: ClassVar[tuple[str, ...]] = ()


class Need(_Model):
    """One thing that would settle an unknown criterion (see adapter/screening/resolve.py)."""

    kind: str  # observation, condition, medication, procedure, immunization, diagnosis, birth-date, judgement
    label: str
    decided_by: DecidedBy = Field(alias="decidedBy")
    concepts: list[str] = Field(default_factory=list)  # concept set names: codes in the report's `concepts`
    since: date | None = None  # a record dated on or after this day counts
    test: str | None = None  # what the value is compared with, e.g. ">= 95%"
    text: str


class Resolve(_Model):
    text: str  # one sentence for people
    settles: Literal["all", "any"]  # every need must be answered, or any one of them decides
    needs: list[Need]


class CriterionResult(_Optional):
    # Frozen: the engine shares one instance between patients with the same answer.
    model_config = ConfigDict(frozen=True)
    _omit_when_none = ("resolve",)

    id: str
    type: Literal["inclusion", "exclusion"]
    result: Tri
    reason: str
    evidence: list[str] = Field(default_factory=list)
    resolve: Resolve | None = None  # for an unknown criterion: what would settle it


class PatientResult(_Optional):
    _omit_when_none = ("latest_data", "reason")

    patient: str
    status: Status
    criteria: list[CriterionResult]  # empty for an error
    # The most recent day of the data the criteria read (ranks candidates: fresh data first).
    latest_data: date | None = Field(default=None, alias="latestData")
    reason: str | None = None  # why an ``error`` could not be screened: the resource and its problem

    @classmethod
    def error(cls, patient: str, reason: str) -> PatientResult:
        return cls(patient=patient, status="error", criteria=[], reason=reason)

    def unknown_criteria(self) -> list[CriterionResult]:
        return [c for c in self.criteria if c.result == "unknown"]

    def deciding_criteria(self) -> list[CriterionResult]:
        """The criteria that make the patient not eligible."""
        return [
            c
            for c in self.criteria
            if (c.type == "inclusion" and c.result == "not-met")
            or (c.type == "exclusion" and c.result == "met")
        ]


class FunnelStep(_Model):
    """Attrition in criterion order: each ruled-out patient counted once, at the first criterion."""

    id: str
    removed: int
    remaining: int


class FunnelCriterion(_Model):
    id: str
    type: Literal["inclusion", "exclusion"]
    rules_out: int = Field(alias="rulesOut")  # patients this criterion rules out (maybe with others)
    only_this: int = Field(alias="onlyThis")  # ... and no other: candidates gained without it
    unknown: int  # patients for whom it is unknown
    blocking: int  # candidates with data still to collect for it
    if_met: int = Field(alias="ifMet")  # candidates left with no data to collect if it were settled


class Funnel(_Model):
    screened: int
    candidates: int
    ready: int  # candidates with nothing left to collect: only people's judgement remains
    blocked_by_unknowns: int = Field(alias="blockedByUnknowns")  # candidates with data still to collect
    steps: list[FunnelStep]
    criteria: list[FunnelCriterion]


class UnmappedItem(_Model):
    """A code or text on screened patients' records that no concept set recognises."""

    kind: Literal["code", "text"]
    system: str | None = None
    code: str | None = None
    text: str | None = None
    resource_type: str = Field(alias="resourceType")
    count: int
    examples: list[str] = Field(default_factory=list)


class Summary(_Optional):
    _omit_when_none = ("errors", "population", "outside_population", "funnel", "unmapped")

    screened: int  # every patient listed: candidates + notEligible + errors
    candidates: int
    not_eligible: int = Field(alias="notEligible")
    errors: int | None = None  # patients that could not be screened (absent when none)
    # How the population was found (server screening), and the terminology gaps seen while screening.
    population: str | None = None
    funnel: Funnel | None = None
    unmapped: list[UnmappedItem] | None = None
    # Files: patients of the export with no sign of the disease, counted and not listed (absent when
    # every patient is listed).
    outside_population: int | None = Field(default=None, alias="outsidePopulation")


class CriterionInfo(_Model):
    id: str
    type: Literal["inclusion", "exclusion"]
    title: str


class ConceptInfo(_Model):
    """The codes of a concept set a `resolve` entry names; `rules` are its other matching rules
    (ranges, prefixes, roots whose descendants count), each as defined."""

    display: str
    codes: list[dict[str, str]]
    rules: list[dict[str, Any]] = Field(default_factory=list)


class ScreeningReport(_Optional):
    _omit_when_none = ("criteria", "concepts")

    study: str
    as_of: date = Field(alias="asOf")
    summary: Summary
    patients: list[PatientResult]
    criteria: list[CriterionInfo] | None = None  # each criterion's short title
    concepts: dict[str, ConceptInfo] | None = None  # the concept sets `resolve` entries name

    @classmethod
    def build(
        cls,
        study: str,
        as_of: date,
        patients: list[PatientResult],
        definition: CriteriaDefinition | None = None,
        outside_population: int | None = None,
    ) -> ScreeningReport:
        from .funnel import build_funnel
        from .resolve import concept_infos
        from .wording import titles

        candidates = sum(1 for p in patients if p.status == "candidate")
        errors = sum(1 for p in patients if p.status == "error")
        return cls(
            study=study,
            asOf=as_of,
            summary=Summary(
                screened=len(patients),
                candidates=candidates,
                notEligible=len(patients) - candidates - errors,
                errors=errors or None,
                funnel=build_funnel(patients),
                outsidePopulation=outside_population,
            ),
            patients=patients,
            criteria=[
                CriterionInfo(id=c.id, type=c.type, title=t)
                for c, t in zip(definition.criteria, titles(definition).values(), strict=True)
            ]
            if definition
            else None,
            concepts=concept_infos(definition, patients) if definition else None,
        )

    def titles(self) -> dict[str, str]:
        return {c.id: c.title for c in self.criteria or ()}

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)
