"""One synthetic patient of the sample population and the clinical resources about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.samples.vocabulary import (
    ALL_RELAPSE,
    ALT,
    AST,
    BILIRUBIN_MASS,
    BILIRUBIN_MOLES,
    BM_BLASTS,
    CD7_LOCAL,
    CLINICAL,
    CREATININE_MASS,
    CREATININE_MOLES,
    CVX,
    DYSPNEA_GRADE,
    ECOG,
    HBV_DNA,
    HCG,
    HCV_RNA,
    HIV,
    LOCAL,
    LVEF,
    NEGATIVE,
    O2_FLOW,
    OBS_CATEGORY,
    ORAL_ROUTE,
    PLATELETS,
    SCT,
    SPO2,
    SYPHILIS,
    T_ALL,
    VERIFICATION,
    Code,
    concept,
    day,
    normal_range,
    quantity,
)


@dataclass
class Sample:
    """One synthetic patient and the clinical resources about them."""

    pid: str
    given: str
    family: str
    gender: str
    birth_date: str | None
    deceased: str | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": {"tag": [{"system": LOCAL, "code": "synthetic", "display": "Synthetic test data"}]},
            "identifier": [{"system": "http://trial-adapter.org/fhir/sid/sample-mrn", "value": self.pid}],
            "name": [{"use": "official", "family": self.family, "given": [self.given]}],
            "gender": self.gender,
        }
        if self.birth_date:
            patient["birthDate"] = self.birth_date
        if self.deceased:
            patient["deceasedDateTime"] = self.deceased
        self.resources.append(patient)

    # --- resource builders ------------------------------------------------------------------------

    def _add(self, resource_type: str, slug: str, body: dict[str, Any], subject: str = "subject") -> None:
        resource = {"resourceType": resource_type, "id": f"{self.pid}-{slug}", **body}
        resource[subject] = {"reference": f"Patient/{self.pid}"}
        self.resources.append(resource)

    def condition(
        self,
        slug: str,
        code: Code,
        onset_days: int,
        *,
        clinical: str = "active",
        verification: str = "confirmed",
        abated_days: int | None = None,
        body_site: Code | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "code": concept(code),
        }
        if body_site:
            body["bodySite"] = [concept(body_site)]
        body["onsetDateTime"] = day(onset_days)
        if abated_days is not None:
            body["abatementDateTime"] = day(abated_days)
        body["recordedDate"] = day(onset_days)
        self._add("Condition", slug, body)

    def observation(
        self,
        slug: str,
        code: Code,
        days: int,
        value: dict[str, Any],
        *,
        category: str = "laboratory",
        status: str = "final",
        ranges: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "status": status,
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
            "code": concept(code),
            "effectiveDateTime": f"{day(days)}T08:30:00Z",
            **value,
        }
        if ranges:
            body["referenceRange"] = ranges
        if components:
            body["component"] = components
        self._add("Observation", slug, body)

    def measured(
        self,
        slug: str,
        code: Code,
        days: int,
        value: float,
        unit: str,
        comparator: str | None = None,
        **kw: Any,
    ) -> None:
        self.observation(slug, code, days, {"valueQuantity": quantity(value, unit, comparator)}, **kw)

    def coded(self, slug: str, code: Code, days: int, answer: Code, **kw: Any) -> None:
        self.observation(slug, code, days, {"valueCodeableConcept": concept(answer)}, **kw)

    def score(self, slug: str, code: Code, days: int, value: int) -> None:
        self.observation(slug, code, days, {"valueInteger": value}, category="survey")

    def medication(self, slug: str, code: Code, start_days: int) -> None:
        body = {
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": concept(code),
            "authoredOn": day(start_days),
            "dosageInstruction": [{"text": "once daily", "route": concept(ORAL_ROUTE)}],
        }
        self._add("MedicationRequest", slug, body)

    def procedure(self, slug: str, code: Code, days: int) -> None:
        body = {"status": "completed", "code": concept(code), "performedDateTime": day(days)}
        self._add("Procedure", slug, body)

    def immunization(self, slug: str, days: int) -> None:
        body = {
            "status": "completed",
            "vaccineCode": concept((CVX, "141", "Influenza, seasonal, injectable")),
            "occurrenceDateTime": day(days),
        }
        self._add("Immunization", slug, body, subject="patient")

    # --- clinical building blocks -----------------------------------------------------------------

    def t_all(self, status: Code = ALL_RELAPSE, lineage: Code = T_ALL) -> None:
        self.condition("dx", lineage, 700, body_site=(SCT, "14016003", "Bone marrow structure"))
        self.condition("rr", status, 40)

    def marrow(self, cd7: float = 93.0, cd7_code: Code = CD7_LOCAL, blasts: float = 38.0) -> None:
        self.measured("bm-blasts", BM_BLASTS, 6, blasts, "%")
        self.measured("cd7", cd7_code, 6, cd7, "%")

    def fitness(self, performance: Code = ECOG, score: int = 1, spo2_oxygen: float | None = None) -> None:
        self.score("performance", performance, 3, score)
        self.score("dyspnea", DYSPNEA_GRADE, 3, 0)
        self.measured("lvef", LVEF, 9, 61.0, "%", category="imaging")
        components = None
        if spo2_oxygen is not None:
            components = [{"code": concept(O2_FLOW), "valueQuantity": quantity(spo2_oxygen, "L/min")}]
        self.measured("spo2", SPO2, 1, 98.0, "%", category="vital-signs", components=components)

    def labs(
        self,
        days: int = 2,
        *,
        molar_units: bool = False,
        creatinine: float | None = None,
        bilirubin: float | None = None,
        platelets: float = 84.0,
        platelet_unit: str = "10*9/L",
    ) -> None:
        """Bilirubin, AST, ALT, creatinine and platelets ``days`` before as-of; umol/L when ``molar_units``."""
        if molar_units:
            self.measured(
                "bilirubin",
                BILIRUBIN_MOLES,
                days,
                bilirubin if bilirubin is not None else 8.5,
                "umol/L",
                ranges=[normal_range(1.2, "mg/dL", 0.1)],  # ULN in mg/dL: converted by the screening
            )
            self.measured(
                "creatinine", CREATININE_MOLES, days, creatinine if creatinine is not None else 41.0, "umol/L"
            )
        else:
            self.measured(
                "bilirubin",
                BILIRUBIN_MASS,
                days,
                bilirubin if bilirubin is not None else 0.6,
                "mg/dL",
                ranges=[normal_range(1.2, "mg/dL", 0.1)],
            )
            self.measured(
                "creatinine", CREATININE_MASS, days, creatinine if creatinine is not None else 0.48, "mg/dL"
            )
        self.measured("ast", AST, days, 36.0, "U/L", ranges=[normal_range(40.0, "U/L", 10.0)])
        self.measured(
            "alt",
            ALT,
            days,
            41.0,
            "U/L",
            ranges=[  # age-specific upper limits
                normal_range(45.0, "U/L", 5.0, ages=(1, 12)),
                normal_range(35.0, "U/L", 5.0, ages=(13, 18)),
            ],
        )
        self.measured("platelets", PLATELETS, days, platelets, platelet_unit)

    def infection_screen(self) -> None:
        self.measured("hbv-dna", HBV_DNA, 20, 10.0, "[IU]/mL", comparator="<")
        self.measured("hcv-rna", HCV_RNA, 20, 15.0, "[IU]/mL", comparator="<")
        self.coded("hiv", HIV, 20, NEGATIVE)
        self.coded("syphilis", SYPHILIS, 20, NEGATIVE)

    def pregnancy_test(self, answer: Code = NEGATIVE) -> None:
        self.coded("hcg", HCG, 2, answer)

    def workup(self, **labs: Any) -> None:
        """Everything a candidate needs besides the diagnosis: marrow, fitness, labs, infections, hCG."""
        self.marrow()
        self.fitness()
        self.labs(**labs)
        self.infection_screen()
        if self.gender == "female":
            self.pregnancy_test()
