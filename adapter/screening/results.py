"""Screening results: the stable JSON contract other tools read."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .tri import Tri

Status = Literal["candidate", "not-eligible"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CriterionResult(_Model):
    # Frozen: the engine shares one instance between patients with the same answer.
    model_config = ConfigDict(frozen=True)

    id: str
    type: Literal["inclusion", "exclusion"]
    result: Tri
    reason: str
    evidence: list[str] = Field(default_factory=list)


class PatientResult(_Model):
    patient: str
    status: Status
    criteria: list[CriterionResult]

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


class Summary(_Model):
    screened: int
    candidates: int
    not_eligible: int = Field(alias="notEligible")
    # Files: patients of the export with no sign of the disease, counted and not listed (absent when
    # every patient is listed).
    outside_population: int | None = Field(default=None, alias="outsidePopulation")


class ScreeningReport(_Model):
    study: str
    as_of: date = Field(alias="asOf")
    summary: Summary
    patients: list[PatientResult]

    @classmethod
    def build(
        cls, study: str, as_of: date, patients: list[PatientResult], outside_population: int | None = None
    ) -> ScreeningReport:
        candidates = sum(1 for p in patients if p.status == "candidate")
        return cls(
            study=study,
            asOf=as_of,
            summary=Summary(
                screened=len(patients),
                candidates=candidates,
                notEligible=len(patients) - candidates,
                outsidePopulation=outside_population,
            ),
            patients=patients,
        )

    def to_json_dict(self) -> dict:
        data = self.model_dump(mode="json", by_alias=True)
        if data["summary"]["outsidePopulation"] is None:
            del data["summary"]["outsidePopulation"]
        return data
