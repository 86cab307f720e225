"""Seeded synthetic hospital for the NCT06849401 benchmarks (standard library only).

``generate(n, seed, as_of)`` yields, patient by patient, FHIR R4 resources (plain dicts) for a hospital
of ``n`` people:

* everyone (all ages 0-95, roughly a population pyramid) gets the ordinary noise of a hospital record:
  ``obs_min``-``obs_max`` vital-sign / routine-lab Observations (LOINC codes no criterion reads), a few
  non-leukaemia Conditions, Encounters, and some Immunizations, MedicationRequests and Procedures;
* a FIXED number of B-lineage / lineage-unstated ALL patients (``b_all``, default 20) and of T-ALL patients
  (``t_all``, default 40), independent of ``n``, so a strategy whose cost follows the ALL population
  costs the same at 1k and 100k. T-ALL patients vary: relapsed / refractory / newly diagnosed /
  in remission, CD7 by local code or LOINC, labs in mg/dL or umol/L with reference ranges, stale and
  future-dated results, entered-in-error records, CNS involvement, prior CAR-T, recent vaccination,
  pregnancy, death, ages in and out of 2-18, no birth date.

Same (n, seed, as_of, options): byte-identical output. Each patient draws from its own
``random.Random(f"{seed}:{index}")``, so patient 17 is the same person in the 1k and the 100k hospital
unless the (seeded) choice of ALL positions lands on it.

Writes a Bulk Data layout (one NDJSON file per resource type) and/or transaction Bundles of PUTs:

    python -m bench.synth --patients 10000 --out /tmp/synth-10k [--bundles 500] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from adapter.samples.vocabulary import (
    ALL_REFRACTORY,
    ALL_RELAPSE,
    ALT,
    AS_OF,
    AST,
    BILIRUBIN_MASS,
    BILIRUBIN_MOLES,
    BM_BLASTS,
    CAR_T,
    CD7_LOCAL,
    CD7_LOINC,
    CLINICAL,
    CREATININE_MASS,
    CREATININE_MOLES,
    CVX,
    DYSPNEA_GRADE,
    ECOG,
    GVHD,
    HBV_DNA,
    HCG,
    HCV_RNA,
    HIV,
    ICD10CM,
    ICDO3_B_ALL,
    ICDO3_T_ALL,
    KARNOFSKY,
    LANSKY,
    LOCAL,
    LOINC,
    LVEF,
    MENINGEAL_LEUKAEMIA,
    NCIT,
    NEGATIVE,
    O2_FLOW,
    OBS_CATEGORY,
    ORAL_ROUTE,
    OSTEOSARCOMA,
    PLATELETS,
    POSITIVE,
    PREDNISONE,
    RXNORM,
    SCT,
    SEIZURE_DISORDER,
    SPO2,
    SYPHILIS,
    T_ALL,
    VERIFICATION,
    Code,
    concept,
    normal_range,
    quantity,
)

CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MRN = "http://trial-adapter.org/fhir/sid/synthetic-mrn"


# --- codes the criteria read (from mappings/studies/NCT06849401/criteria.yaml) --------------------------
T_ALL_PRECURSOR: Code = (SCT, "420890002", "Precursor T cell lymphoblastic leukemia/lymphoblastic lymphoma")
T_ALL_REMISSION: Code = (SCT, "427642009", "T-cell acute lymphoblastic leukemia in remission")
ALL_SCT: Code = (SCT, "91857003", "Acute lymphoid leukemia")
ALL_ICD_NOT_REMISSION: Code = (
    ICD10CM,
    "C91.00",
    "Acute lymphoblastic leukemia not having achieved remission",
)
ALL_ICD_REMISSION: Code = (ICD10CM, "C91.01", "Acute lymphoblastic leukemia in remission")
ALL_ICD_RELAPSE: Code = (ICD10CM, "C91.02", "Acute lymphoblastic leukemia in relapse")
TESTIS: Code = (SCT, "40689003", "Testis structure")
BONE_MARROW: Code = (SCT, "14016003", "Bone marrow structure")
PREGNANT: Code = (SCT, "77386006", "Pregnant")
HEART_FAILURE: Code = (SCT, "84114007", "Heart failure")
CAR_T_NCIT: Code = (NCIT, "C126102", "CAR T-cell therapy")
SURGICAL: Code = (SCT, "387713003", "Surgical procedure")
DEXAMETHASONE: Code = (RXNORM, "3264", "dexamethasone")
ENOXAPARIN: Code = (RXNORM, "67108", "enoxaparin")


# --- hospital noise: codes no criterion reads -------------------------------------------------------------
# (code, unit, low, high, category, decimals)
NOISE_OBSERVATIONS: list[tuple[Code, str, float, float, str, int]] = [
    ((LOINC, "8867-4", "Heart rate"), "/min", 55, 120, "vital-signs", 0),
    ((LOINC, "9279-1", "Respiratory rate"), "/min", 12, 30, "vital-signs", 0),
    ((LOINC, "8310-5", "Body temperature"), "Cel", 36.0, 38.5, "vital-signs", 1),
    ((LOINC, "29463-7", "Body weight"), "kg", 3, 110, "vital-signs", 1),
    ((LOINC, "8302-2", "Body height"), "cm", 50, 195, "vital-signs", 0),
    ((LOINC, "39156-5", "Body mass index (BMI) [Ratio]"), "kg/m2", 14, 38, "vital-signs", 1),
    ((LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"), "g/dL", 9, 17, "laboratory", 1),
    (
        (LOINC, "6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
        "10*3/uL",
        3,
        14,
        "laboratory",
        1,
    ),
    ((LOINC, "2951-2", "Sodium [Moles/volume] in Serum or Plasma"), "mmol/L", 132, 146, "laboratory", 0),
    ((LOINC, "2823-3", "Potassium [Moles/volume] in Serum or Plasma"), "mmol/L", 3.3, 5.3, "laboratory", 1),
    ((LOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"), "mg/dL", 65, 190, "laboratory", 0),
    ((LOINC, "3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma"), "mg/dL", 6, 30, "laboratory", 0),
    ((LOINC, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"), "mg/dL", 120, 280, "laboratory", 0),
    ((LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "%", 4.5, 9.5, "laboratory", 1),
    (
        (LOINC, "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"),
        "mg/dL",
        30,
        90,
        "laboratory",
        0,
    ),
]
BLOOD_PRESSURE: Code = (LOINC, "85354-9", "Blood pressure panel with all children optional")
SYSTOLIC: Code = (LOINC, "8480-6", "Systolic blood pressure")
DIASTOLIC: Code = (LOINC, "8462-4", "Diastolic blood pressure")

NOISE_CONDITIONS: list[Code] = [
    (SCT, "195967001", "Asthma"),
    (SCT, "38341003", "Hypertensive disorder"),
    (SCT, "44054006", "Diabetes mellitus type 2"),
    (SCT, "35489007", "Depressive disorder"),
    (SCT, "65363002", "Otitis media"),
    (SCT, "444814009", "Viral sinusitis"),
    (SCT, "40055000", "Chronic sinusitis"),
    (SCT, "55822004", "Hyperlipidemia"),
    (SCT, "396275006", "Osteoarthritis"),
    (SCT, "13645005", "Chronic obstructive lung disease"),
    (SCT, "68566005", "Urinary tract infectious disease"),
    (SCT, "24079001", "Atopic dermatitis"),
    (ICD10CM, "J06.9", "Acute upper respiratory infection, unspecified"),
    (ICD10CM, "E66.9", "Obesity, unspecified"),
    (ICD10CM, "M54.5", "Low back pain"),
]
NOISE_MEDICATIONS: list[Code] = [
    (RXNORM, "197361", "amlodipine 5 MG Oral Tablet"),
    (RXNORM, "860975", "metformin hydrochloride 500 MG Oral Tablet"),
    (RXNORM, "313782", "acetaminophen 325 MG Oral Tablet"),
    (RXNORM, "308182", "amoxicillin 250 MG Oral Capsule"),
    (RXNORM, "745679", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
]
NOISE_PROCEDURES: list[Code] = [
    (SCT, "73761001", "Colonoscopy"),
    (SCT, "80146002", "Appendectomy"),
    (SCT, "18286008", "Catheter ablation of tissue of heart"),
    (SCT, "76601001", "Intramuscular injection"),
]
VACCINES: list[Code] = [
    (CVX, "141", "Influenza, seasonal, injectable"),
    (CVX, "08", "Hep B, adolescent or pediatric"),
    (CVX, "20", "DTaP"),
    (CVX, "208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
]
ENCOUNTER_TYPES: list[tuple[str, str]] = [
    ("AMB", "ambulatory"),
    ("EMER", "emergency"),
    ("IMP", "inpatient encounter"),
]
GIVEN = [
    "Alex",
    "Sam",
    "Robin",
    "Kim",
    "Jo",
    "Lee",
    "Max",
    "Nico",
    "Ari",
    "Remy",
    "Sasha",
    "Toni",
    "Eli",
    "Noa",
]
FAMILY = ["Synth", "Testperson", "Fictional", "Example", "Dummy", "Specimen", "Mockford", "Placeholder"]


@dataclass(frozen=True)
class Options:
    seed: int = 7
    as_of: date = AS_OF
    t_all: int = 40
    b_all: int = 20
    obs_min: int = 20
    obs_max: int = 60


def _age_years(rng: random.Random) -> int:
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

    def t_all_record(self, variant: random.Random, female: bool, age: int | None) -> None:
        rng = variant
        lineage = rng.choice([[T_ALL], [T_ALL_PRECURSOR], [ICDO3_T_ALL], [T_ALL, ICDO3_T_ALL]])
        self.condition(lineage, rng.randint(200, 1500), body_site=BONE_MARROW)
        status = rng.choices(
            ["relapse", "relapse-icd", "refractory", "new", "remission"], weights=[4, 1, 3, 1, 1]
        )[0]
        if status == "relapse":
            self.condition(ALL_RELAPSE, rng.randint(10, 90))
        elif status == "relapse-icd":
            self.condition(ALL_ICD_RELAPSE, rng.randint(10, 90))
        elif status == "refractory":
            self.condition(ALL_REFRACTORY, rng.randint(10, 90))
        elif status == "remission":
            self.condition(T_ALL_REMISSION, rng.randint(30, 200))
        if rng.random() < 0.9:  # marrow
            self.measured(BM_BLASTS, rng.randint(3, 20), float(rng.randint(5, 90)), "%")
            cd7 = float(rng.choice([rng.randint(60, 79), rng.randint(80, 99), rng.randint(80, 99)]))
            self.measured(rng.choice([CD7_LOCAL, CD7_LOINC]), rng.randint(3, 20), cd7, "%")
        if rng.random() < 0.85:  # fitness
            if age is not None and age < 16:
                self.score(LANSKY, rng.randint(1, 20), rng.choice([50, 70, 80, 90]))
            else:
                self.score(
                    rng.choice([ECOG, KARNOFSKY]),
                    rng.randint(1, 20),
                    rng.choice([0, 1, 2]) if rng.random() < 0.5 else 80,
                )
            self.score(DYSPNEA_GRADE, rng.randint(1, 20), rng.choice([0, 0, 1, 2]))
            self.measured(LVEF, rng.randint(5, 40), float(rng.randint(45, 70)), "%", category="imaging")
            oxygen = rng.choice([None, None, None, 0.0, 2.0])
            components = (
                None
                if oxygen is None
                else [{"code": concept(O2_FLOW), "valueQuantity": quantity(oxygen, "L/min")}]
            )
            self.measured(
                SPO2,
                rng.randint(0, 9),
                float(rng.randint(90, 100)),
                "%",
                category="vital-signs",
                components=components,
            )
        lab_days = rng.choice([1, 2, 3, 5, 7, 10, 25])  # 10 and 25: stale (unknown)
        self.labs(
            lab_days,
            molar=rng.random() < 0.5,
            creatinine_mg=rng.choice([0.4, 0.5, 0.7, 0.9, 1.8]),
            bilirubin_mg=rng.choice([0.4, 0.6, 0.9, 4.2]),
            platelets=float(rng.choice([8, 25, 60, 120, 210])),
        )
        if rng.random() < 0.8:
            self.measured(HBV_DNA, 20, 10.0, "[IU]/mL", comparator="<")
            self.measured(HCV_RNA, 20, 15.0, "[IU]/mL", comparator="<")
            self.coded(HIV, 20, NEGATIVE)
            self.coded(SYPHILIS, 20, rng.choice([NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE]))
        if female and (age or 0) >= 10:
            self.coded(HCG, rng.randint(1, 9), POSITIVE if rng.random() < 0.15 else NEGATIVE)
        # the irregular things a sceptical test needs
        if rng.random() < 0.2:  # a later result recorded in error, which must be ignored
            self.measured(CREATININE_MASS, 0, 4.2, "mg/dL", status="entered-in-error")
        if rng.random() < 0.15:  # dated after the as-of date, must be ignored
            self.measured(PLATELETS, -3, 4.0, "10*9/L")
        if rng.random() < 0.12:
            self.condition(
                MENINGEAL_LEUKAEMIA, rng.randint(5, 60), verification=rng.choice(["confirmed", "refuted"])
            )
        if not female and rng.random() < 0.05:
            self.condition(lineage, rng.randint(5, 60), body_site=TESTIS)
        if rng.random() < 0.12:
            self.procedure(
                rng.choice([CAR_T, CAR_T_NCIT]),
                rng.randint(100, 500),
                status=rng.choice(["completed", "completed", "not-done", "entered-in-error"]),
            )
        if rng.random() < 0.15:
            self.immunization(rng.randint(3, 60))
        if rng.random() < 0.08:
            self.procedure((SCT, "80146002", "Appendectomy"), rng.randint(5, 40), surgical=True)
        if rng.random() < 0.08:
            self.condition(GVHD, rng.randint(30, 200))
            self.medication(rng.choice([PREDNISONE, DEXAMETHASONE]), rng.randint(10, 60))
        if rng.random() < 0.05:
            self.medication(ENOXAPARIN, rng.randint(3, 30))
        if rng.random() < 0.05:
            self.condition(OSTEOSARCOMA, 900, clinical="remission", abated_days=rng.choice([300, 1500]))
        if rng.random() < 0.05:
            self.condition(SEIZURE_DISORDER, rng.randint(300, 2000))
        if rng.random() < 0.04:
            self.condition(HEART_FAILURE, rng.randint(30, 300))
        if female and (age or 0) >= 13 and rng.random() < 0.3:
            self.condition(PREGNANT, rng.randint(10, 80))

    def b_all_record(self, variant: random.Random) -> None:
        rng = variant
        kind = rng.choice(["icdo3+sct", "icd10cm", "sct-only"])
        if kind == "icdo3+sct":
            self.condition([ALL_SCT, ICDO3_B_ALL], rng.randint(200, 1500), body_site=BONE_MARROW)
        elif kind == "icd10cm":
            self.condition(
                [rng.choice([ALL_ICD_NOT_REMISSION, ALL_ICD_REMISSION, ALL_ICD_RELAPSE]), ICDO3_B_ALL],
                rng.randint(200, 1500),
            )
        else:  # lineage not stated anywhere: screened as unknown
            self.condition(ALL_SCT, rng.randint(200, 1500))
        if rng.random() < 0.5:
            self.condition(ALL_RELAPSE, rng.randint(10, 90))
        self.measured(BM_BLASTS, rng.randint(3, 20), float(rng.randint(5, 90)), "%")
        self.labs(
            rng.choice([1, 3, 8]),
            molar=rng.random() < 0.5,
            creatinine_mg=0.6,
            bilirubin_mg=0.7,
            platelets=float(rng.randint(20, 300)),
        )


def _all_positions(n: int, opts: Options) -> dict[int, str]:
    wanted = min(n, opts.t_all + opts.b_all)
    chosen = random.Random(f"{opts.seed}:all-positions:{n}").sample(range(n), wanted)
    return {pos: ("t" if i < opts.t_all else "b") for i, pos in enumerate(chosen)}


def patient_resources(index: int, kind: str | None, opts: Options) -> list[dict[str, Any]]:
    """All resources of patient ``index``: ``kind`` None (no leukaemia), "t" (T-ALL) or "b" (other ALL)."""
    rng = random.Random(f"{opts.seed}:{index}")
    pid = f"p{index:07d}"
    b = PatientBuilder(pid, rng, opts)
    female = rng.random() < 0.5
    age: int | None = _age_years(rng)
    deceased = None
    variant = random.Random(f"{opts.seed}:{index}:{kind}")
    if kind is not None:
        # ALL patients are mostly children, some young adults and toddlers (out of the 2-18 range)
        age = variant.choices(
            [variant.randint(2, 18), variant.randint(19, 30), 1, None], weights=[80, 12, 4, 4]
        )[0]
        if kind == "t" and variant.random() < 0.06:
            deceased = f"{b.day(variant.randint(2, 100))}T04:10:00Z"
    b.add_patient("female" if female else "male", b.birth(age) if age is not None else None, deceased)
    b.hospital_noise(age if age is not None else 10)
    if kind == "t":
        b.t_all_record(variant, female, age)
    elif kind == "b":
        b.b_all_record(variant)
    return b.resources


def generate(n: int, opts: Options | None = None) -> Iterator[dict[str, Any]]:
    opts = opts or Options()
    positions = _all_positions(n, opts)
    for index in range(n):
        yield from patient_resources(index, positions.get(index), opts)


def all_patient_ids(n: int, opts: Options | None = None) -> dict[str, str]:
    """``{patient id: "t" | "b"}`` for the ALL patients of a hospital of ``n``."""
    opts = opts or Options()
    return {f"p{pos:07d}": kind for pos, kind in _all_positions(n, opts).items()}


def _dumps(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


def write_ndjson(n: int, out: Path, opts: Options | None = None) -> dict[str, int]:
    """Bulk Data layout: ``out/<Type>.ndjson``. Returns resource counts per type."""
    out.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        for res in generate(n, opts):
            rtype = res["resourceType"]
            fh = handles.get(rtype)
            if fh is None:
                fh = handles[rtype] = (out / f"{rtype}.ndjson").open("w", encoding="utf-8")
            fh.write(_dumps(res) + "\n")
            counts[rtype] = counts.get(rtype, 0) + 1
    finally:
        for fh in handles.values():
            fh.close()
    (out / "manifest.json").write_text(
        json.dumps({"patients": n, "seed": (opts or Options()).seed, "counts": counts}, indent=2) + "\n"
    )
    return counts


def transaction_bundles(resources: Iterator[dict[str, Any]], size: int = 500) -> Iterator[dict[str, Any]]:
    """Transaction Bundles of ``size`` PUTs (client-assigned ids, so references stay valid)."""
    entries: list[dict[str, Any]] = []
    for res in resources:
        key = f"{res['resourceType']}/{res['id']}"
        entries.append({"fullUrl": key, "resource": res, "request": {"method": "PUT", "url": key}})
        if len(entries) >= size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            entries = []
    if entries:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write_bundles(n: int, out: Path, size: int = 500, opts: Options | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, bundle in enumerate(transaction_bundles(generate(n, opts), size), start=1):
        (out / f"bundle-{count:05d}.json").write_text(_dumps(bundle), encoding="utf-8")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=AS_OF)
    parser.add_argument("--t-all", type=int, default=40)
    parser.add_argument("--b-all", type=int, default=20)
    parser.add_argument("--obs-min", type=int, default=20)
    parser.add_argument("--obs-max", type=int, default=60)
    parser.add_argument(
        "--bundles",
        type=int,
        default=0,
        metavar="SIZE",
        help="also write transaction Bundles of SIZE PUT entries under OUT/bundles/",
    )
    args = parser.parse_args(argv)
    opts = Options(args.seed, args.as_of, args.t_all, args.b_all, args.obs_min, args.obs_max)
    counts = write_ndjson(args.patients, args.out, opts)
    print(json.dumps({"out": str(args.out), "counts": counts, "total": sum(counts.values())}))
    if args.bundles:
        write_bundles(args.patients, args.out / "bundles", args.bundles, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
