"""One synthetic hospital patient: the hospital noise of their record and, for ALL patients, the leukaemia record the criteria read (see synth.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from adapter.samples.vocabulary import (
    ALT,
    AS_OF,
    AST,
    BILIRUBIN_MASS,
    BILIRUBIN_MOLES,
    CLINICAL,
    CREATININE_MASS,
    CREATININE_MOLES,
    LOCAL,
    OBS_CATEGORY,
    ORAL_ROUTE,
    PLATELETS,
    VERIFICATION,
    Code,
    concept,
    normal_range,
    quantity,
)
from bench.synth_codes import (
    ACT_CODE,
    BLOOD_PRESSURE,
    CONDITION_CATEGORY,
    DIASTOLIC,
    ENCOUNTER_TYPES,
    FAMILY,
    GIVEN,
    MRN,
    NOISE_CONDITIONS,
    NOISE_MEDICATIONS,
    NOISE_OBSERVATIONS,
    NOISE_PROCEDURES,
    SURGICAL,
    SYSTOLIC,
    VACCINES,
)


@dataclass(frozen=True)
class Options:
    seed: int = 7
    as_of: date = AS_OF
    t_all: int = 40
    b_all: int = 20
    obs_min: int = 20
    obs_max: int = 60


def age_years(rng: random.Random) -> int:
    """All ages, shaped roughly like a hospital's population pyramid (about 20% under 19)."""
    band = rng.choices(
        [(0, 1), (2, 18), (19, 39), (40, 64), (65, 84), (85, 99)], weights=[3, 17, 25, 30, 20, 5]
    )[0]
    return rng.randint(*band)


class PatientBuilder:
    def __init__(self, pid: str, rng: random.Random, opts: Options) -> None:
        self.pid = pid
        self.rng = rng
        self.opts = opts
        self.resources: list[dict[str, Any]] = []
        self._serial = 0
        self.patient: dict[str, Any] = {}

    # --- dates ---------------------------------------------------------------------------------------
    def day(self, days_before: int) -> str:
        return (self.opts.as_of - timedelta(days=days_before)).isoformat()

    def instant(self, days_before: int) -> str:
        return f"{self.day(days_before)}T{self.rng.randint(6, 20):02d}:{self.rng.randint(0, 59):02d}:00Z"

    def birth(self, years: int) -> str:
        as_of = self.opts.as_of
        born = date(as_of.year - years, as_of.month, min(as_of.day, 28)) - timedelta(
            days=self.rng.randint(0, 364)
        )
        return born.isoformat()

    # --- resources -----------------------------------------------------------------------------------
    def _id(self, kind: str) -> str:
        self._serial += 1
        return f"{self.pid}-{kind}{self._serial}"

    def add_patient(self, gender: str, birth_date: str | None, deceased: str | None = None) -> None:
        p: dict[str, Any] = {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": {"tag": [{"system": LOCAL, "code": "synthetic", "display": "Synthetic test data"}]},
            "identifier": [{"system": MRN, "value": self.pid}],
            "name": [
                {"use": "official", "family": self.rng.choice(FAMILY), "given": [self.rng.choice(GIVEN)]}
            ],
            "gender": gender,
        }
        if birth_date:
            p["birthDate"] = birth_date
        if deceased:
            p["deceasedDateTime"] = deceased
        self.patient = p
        self.resources.append(p)

    def _add(self, rtype: str, kind: str, body: dict[str, Any], subject: str = "subject") -> dict[str, Any]:
        res = {"resourceType": rtype, "id": self._id(kind), **body}
        res[subject] = {"reference": f"Patient/{self.pid}"}
        self.resources.append(res)
        return res

    def condition(
        self,
        code: Code | list[Code],
        onset_days: int,
        *,
        clinical: str = "active",
        verification: str = "confirmed",
        abated_days: int | None = None,
        body_site: Code | None = None,
    ) -> None:
        codes = code if isinstance(code, list) else [code]
        body: dict[str, Any] = {
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codes]},
        }
        if body_site:
            body["bodySite"] = [concept(body_site)]
        body["onsetDateTime"] = self.day(onset_days)
        if abated_days is not None:
            body["abatementDateTime"] = self.day(abated_days)
        body["recordedDate"] = self.day(max(onset_days, abated_days or onset_days))
        self._add("Condition", "c", body)

    def observation(
        self,
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
            "effectiveDateTime": self.instant(days),
            **value,
        }
        if ranges:
            body["referenceRange"] = ranges
        if components:
            body["component"] = components
        self._add("Observation", "o", body)

    def measured(
        self, code: Code, days: int, value: float, unit: str, comparator: str | None = None, **kw: Any
    ) -> None:
        self.observation(code, days, {"valueQuantity": quantity(value, unit, comparator)}, **kw)

    def coded(self, code: Code, days: int, answer: Code, **kw: Any) -> None:
        self.observation(code, days, {"valueCodeableConcept": concept(answer)}, **kw)

    def score(self, code: Code, days: int, value: int) -> None:
        self.observation(code, days, {"valueInteger": value}, category="survey")

    def medication(self, code: Code, start_days: int, status: str = "active") -> None:
        body = {
            "status": status,
            "intent": "order",
            "medicationCodeableConcept": concept(code),
            "authoredOn": self.day(start_days),
            "dosageInstruction": [{"text": "once daily", "route": concept(ORAL_ROUTE)}],
        }
        self._add("MedicationRequest", "m", body)

    def procedure(self, code: Code, days: int, status: str = "completed", surgical: bool = False) -> None:
        body: dict[str, Any] = {"status": status, "code": concept(code), "performedDateTime": self.day(days)}
        if surgical:
            body["category"] = concept(SURGICAL)
        self._add("Procedure", "p", body)

    def immunization(self, days: int, vaccine: Code | None = None, status: str = "completed") -> None:
        body = {
            "status": status,
            "vaccineCode": concept(vaccine or self.rng.choice(VACCINES)),
            "occurrenceDateTime": self.day(days),
        }
        self._add("Immunization", "i", body, subject="patient")

    def encounter(self, days: int) -> None:
        code, display = self.rng.choice(ENCOUNTER_TYPES)
        start = self.instant(days)
        body = {
            "status": "finished",
            "class": {"system": ACT_CODE, "code": code, "display": display},
            "period": {"start": start, "end": start},
        }
        self._add("Encounter", "e", body)

    # --- everyone's ordinary record ------------------------------------------------------------------
    def hospital_noise(self, age: int) -> None:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            self.encounter(rng.randint(0, 1500))
        for _ in range(rng.randint(self.opts.obs_min, self.opts.obs_max)):
            days = rng.randint(-2, 1500)  # a few dated after the as-of date (scheduled/clock skew)
            if rng.random() < 0.1:
                self.observation(
                    BLOOD_PRESSURE,
                    days,
                    {},
                    category="vital-signs",
                    components=[
                        {
                            "code": concept(SYSTOLIC),
                            "valueQuantity": quantity(rng.randint(90, 160), "mm[Hg]"),
                        },
                        {
                            "code": concept(DIASTOLIC),
                            "valueQuantity": quantity(rng.randint(55, 100), "mm[Hg]"),
                        },
                    ],
                )
                continue
            code, unit, low, high, category, decimals = rng.choice(NOISE_OBSERVATIONS)
            value = round(rng.uniform(low, high), decimals)
            status = "entered-in-error" if rng.random() < 0.01 else "final"
            self.measured(
                code, days, value if decimals else int(value), unit, category=category, status=status
            )
        for _ in range(rng.choices([0, 1, 2, 3, 4], weights=[25, 35, 20, 12, 8])[0]):
            self.condition(
                rng.choice(NOISE_CONDITIONS),
                rng.randint(30, 3000),
                clinical=rng.choice(["active", "active", "resolved"]),
            )
        if age < 19 and rng.random() < 0.5:
            self.immunization(rng.randint(20, 2000))
        if rng.random() < 0.25:
            self.medication(
                rng.choice(NOISE_MEDICATIONS), rng.randint(5, 900), rng.choice(["active", "completed"])
            )
        if rng.random() < 0.08:
            self.procedure(rng.choice(NOISE_PROCEDURES), rng.randint(60, 3000))

    # --- leukaemia -------------------------------------------------------------------------------------
    def labs(
        self, days: int, *, molar: bool, creatinine_mg: float, bilirubin_mg: float, platelets: float
    ) -> None:
        rng = self.rng
        if molar:
            self.measured(
                BILIRUBIN_MOLES,
                days,
                round(bilirubin_mg * 17.1, 1),
                "umol/L",
                ranges=[normal_range(20.5, "umol/L", 1.7)],
            )
            self.measured(
                CREATININE_MOLES,
                days,
                round(creatinine_mg * 88.4, 1),
                "umol/L",
                ranges=[normal_range(90.0, "umol/L", 20.0)],
            )
        else:
            self.measured(
                BILIRUBIN_MASS, days, bilirubin_mg, "mg/dL", ranges=[normal_range(1.2, "mg/dL", 0.1)]
            )
            self.measured(
                CREATININE_MASS, days, creatinine_mg, "mg/dL", ranges=[normal_range(1.0, "mg/dL", 0.2)]
            )
        self.measured(AST, days, float(rng.randint(15, 90)), "U/L", ranges=[normal_range(40.0, "U/L", 10.0)])
        self.measured(
            ALT,
            days,
            float(rng.randint(10, 80)),
            "U/L",
            ranges=[
                normal_range(45.0, "U/L", 5.0, ages=(1, 12)),
                normal_range(35.0, "U/L", 5.0, ages=(13, 18)),
            ],
        )
        unit, value = ("10*3/uL", platelets) if rng.random() < 0.3 else ("10*9/L", platelets)
        self.measured(PLATELETS, days, value, unit)
