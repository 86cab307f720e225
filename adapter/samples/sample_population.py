"""A synthetic sample population for NCT06849401, screened as of 2026-11-23.

Builds a FHIR R4 ``collection`` Bundle of 24 fictional paediatric patients (no real people): full
candidates, patients who are not eligible for one distinct reason each, patients whose records leave
criteria unknown, and some noise the screening must ignore (vital signs, an entered-in-error lab, a
refuted condition, a future-dated result). The output is deterministic: fixed dates relative to the
as-of date, ids that say what each patient is, and ``urn:uuid`` fullUrls derived with uuid5.

Regenerate the committed file with ``python -m adapter.samples.sample_population``.
Standard library only.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

AS_OF = date(2026, 11, 23)
SAMPLE_PATH = Path(__file__).with_name("nct06849401-sample-bundle.json")
BUNDLE_ID = "nct06849401-sample-population"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://trial-adapter.org/samples/NCT06849401")

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
CVX = "http://hl7.org/fhir/sid/cvx"
LOCAL = "http://trial-adapter.org/fhir/CodeSystem/trial-adapter-local"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"

Code = tuple[str, str, str]  # system, code, display

T_ALL: Code = (SCT, "277575008", "T-cell acute lymphoblastic leukemia")
ALL_RELAPSE: Code = (SCT, "12301000132103", "Acute lymphoid leukemia relapse")
ALL_REFRACTORY: Code = (SCT, "12311000132101", "Refractory acute lymphoid leukemia")
ICDO3_T_ALL: Code = (ICDO3, "9837/3", "T lymphoblastic leukemia/lymphoma")
ICDO3_B_ALL: Code = (ICDO3, "9811/3", "B lymphoblastic leukemia/lymphoma, NOS")
ICD_ALL_RELAPSE: Code = (ICD10CM, "C91.02", "Acute lymphoblastic leukemia, in relapse")
MENINGEAL_LEUKAEMIA: Code = (SCT, "722795004", "Meningeal leukemia")
GVHD: Code = (SCT, "402356004", "Chronic graft-versus-host disease")
OSTEOSARCOMA: Code = (ICD10CM, "C40.22", "Malignant neoplasm of long bones of left lower limb")
ASTHMA: Code = (SCT, "195967001", "Asthma")

BM_BLASTS: Code = (LOINC, "11150-0", "Blasts/cells in Bone marrow")
CD7_LOCAL: Code = (LOCAL, "cd7-positive-blasts", "CD7-positive blasts, % of blasts")
CD7_LOINC: Code = (LOINC, "35641-0", "CD7 cells/cells in Bone marrow")
ECOG: Code = (LOINC, "89247-1", "ECOG Performance Status score")
KARNOFSKY: Code = (LOINC, "89243-0", "Karnofsky Performance Status score")
LANSKY: Code = (NCIT, "C38144", "Lansky Play-Performance Status")
LVEF: Code = (LOINC, "10230-1", "Left ventricular Ejection fraction")
DYSPNEA_GRADE: Code = (LOCAL, "ctcae-dyspnea-grade", "Dyspnea, CTCAE v5.0 grade")
SPO2: Code = (LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")
O2_FLOW: Code = (LOINC, "3151-8", "Inhaled oxygen flow rate")
BILIRUBIN_MASS: Code = (LOINC, "1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma")
BILIRUBIN_MOLES: Code = (LOINC, "14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma")
AST: Code = (LOINC, "1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma")
ALT: Code = (LOINC, "1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma")
CREATININE_MASS: Code = (LOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
CREATININE_MOLES: Code = (LOINC, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma")
PLATELETS: Code = (LOINC, "777-3", "Platelets [#/volume] in Blood by Automated count")
HCG: Code = (LOINC, "2118-8", "Choriogonadotropin (pregnancy test) [Presence] in Serum or Plasma")
HBV_DNA: Code = (LOINC, "42595-9", "Hepatitis B virus DNA [Units/volume] (viral load) in Serum or Plasma")
HCV_RNA: Code = (LOINC, "11011-4", "Hepatitis C virus RNA [Units/volume] (viral load) in Serum or Plasma")
HIV: Code = (LOINC, "56888-1", "HIV 1+2 Ab+HIV1 p24 Ag [Presence] in Serum or Plasma")
SYPHILIS: Code = (LOINC, "24110-9", "Treponema pallidum Ab [Presence] in Serum")
BODY_WEIGHT: Code = (LOINC, "29463-7", "Body weight")
HEART_RATE: Code = (LOINC, "8867-4", "Heart rate")
NEGATIVE: Code = (SCT, "260385009", "Negative")
POSITIVE: Code = (SCT, "10828004", "Positive")
CAR_T: Code = (SCT, "1156961008", "Chimeric antigen receptor T-cell immunotherapy")
PREDNISONE: Code = (RXNORM, "8640", "prednisone")
ORAL_ROUTE: Code = (SCT, "26643006", "Oral route")
SEIZURE_DISORDER: Code = (SCT, "128613002", "Seizure disorder")


def day(days_before: int) -> str:
    """The ISO date ``days_before`` days before the as-of date (negative: after it)."""
    return (AS_OF - timedelta(days=days_before)).isoformat()


def birth(years: int, days_before: int = 0) -> str:
    """A birth date making the patient ``years`` old on the as-of date, ``days_before`` earlier."""
    return (AS_OF.replace(year=AS_OF.year - years) - timedelta(days=days_before)).isoformat()


def concept(code: Code, text: str | None = None) -> dict[str, Any]:
    system, value, display = code
    out: dict[str, Any] = {"coding": [{"system": system, "code": value, "display": display}]}
    if text:
        out["text"] = text
    return out


def quantity(value: float, unit: str, comparator: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if comparator:
        out["comparator"] = comparator
    out.update({"unit": unit, "system": UCUM, "code": unit})
    return out


def normal_range(
    high: float,
    unit: str,
    low: float | None = None,
    *,
    sex: str | None = None,
    ages: tuple[int, int] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if low is not None:
        out["low"] = quantity(low, unit)
    out["high"] = quantity(high, unit)
    out["type"] = {"coding": [{"system": RANGE_MEANING, "code": "normal", "display": "Normal Range"}]}
    if sex:
        out["appliesTo"] = [
            {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": sex}], "text": sex}
        ]
    if ages:
        out["age"] = {"low": quantity(ages[0], "a"), "high": quantity(ages[1], "a")}
    return out


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


def _samples() -> list[Sample]:
    samples: list[Sample] = []

    def new(pid: str, given: str, family: str, gender: str, birth_date: str | None, **kw: Any) -> Sample:
        sample = Sample(pid, given, family, gender, birth_date, **kw)
        samples.append(sample)
        return sample

    # --- candidates: every computable criterion passes ----------------------------------------------
    s = new("candidate-relapsed-girl", "Liora", "Fenwick-Sample", "female", birth(12, 140))
    s.t_all()
    s.workup()
    s.measured("weight", BODY_WEIGHT, 1, 39.5, "kg", category="vital-signs")  # noise: vital signs
    s.measured("heart-rate", HEART_RATE, 1, 92.0, "/min", category="vital-signs")
    s.measured("creatinine-error", CREATININE_MASS, 1, 4.2, "mg/dL", status="entered-in-error")

    s = new("candidate-refractory-boy", "Tobin", "Marlowe-Sample", "male", birth(8, 33))
    s.t_all(status=ALL_REFRACTORY)
    s.marrow(cd7=88.5)
    s.fitness(performance=LANSKY, score=80)
    s.labs(molar_units=True)
    s.infection_screen()
    s.condition("cns-refuted", MENINGEAL_LEUKAEMIA, 30, verification="refuted")  # noise: refuted

    s = new("candidate-relapsed-teen-boy", "Caspian", "Oakridge-Sample", "male", birth(19, -1))  # 19 tomorrow
    s.t_all(lineage=ICDO3_T_ALL)
    s.workup(platelet_unit="10*3/uL", platelets=51.0)

    s = new("candidate-toddler-girl", "Wren", "Ashdown-Sample", "female", birth(2))  # 2nd birthday today
    s.t_all()
    s.marrow(cd7=97.0)
    s.fitness(performance=LANSKY, score=70)
    s.labs(molar_units=True)
    s.infection_screen()  # no pregnancy test at 2 years: inclusion-11 stays unknown, never excludes
    s.measured("platelets-future", PLATELETS, -3, 4.0, "10*9/L")  # noise: dated after as-of

    s = new("candidate-relapsed-teen-girl", "Isolde", "Brackenbury-Sample", "female", birth(16, 200))
    s.t_all()
    s.marrow(cd7_code=CD7_LOINC, cd7=81.0)
    s.fitness(spo2_oxygen=0.0)  # oxygen flow recorded as 0 L/min: room air
    s.labs(days=7)
    s.infection_screen()
    s.pregnancy_test()

    # --- not eligible: one distinct reason each -----------------------------------------------------
    s = new("excl-age-19", "Rowan", "Thistledown-Sample", "male", birth(19))  # 19th birthday today
    s.t_all()
    s.workup()

    s = new("excl-age-1", "Pip", "Larkspur-Sample", "female", birth(2, -1))  # 2nd birthday tomorrow
    s.t_all()
    s.workup()

    s = new("excl-b-all", "Ansel", "Whitcombe-Sample", "male", birth(10, 50))
    s.t_all(lineage=ICDO3_B_ALL)
    s.workup()

    s = new("excl-cd7-78", "Maren", "Holloway-Sample", "female", birth(14, 10))
    s.t_all()
    s.marrow(cd7=78.0)
    s.fitness()
    s.labs()
    s.infection_screen()
    s.pregnancy_test()

    s = new("excl-creatinine-umol", "Fenn", "Raybourne-Sample", "male", birth(15, 90))
    s.t_all()
    s.workup(molar_units=True, creatinine=160.0)  # 1.81 mg/dL

    s = new("excl-cns", "Elodie", "Carrow-Sample", "female", birth(9, 75))
    s.t_all()
    s.workup()
    s.condition("cns", MENINGEAL_LEUKAEMIA, 12)

    s = new("excl-prior-car-t", "Jasper", "Quenby-Sample", "male", birth(13, 5))
    s.t_all()
    s.workup()
    s.procedure("car-t", CAR_T, 240)

    s = new("excl-vaccinated", "Noor", "Penhallow-Sample", "female", birth(6, 180))
    s.t_all()
    s.workup()
    s.immunization("flu-vaccine", 10)

    s = new("excl-pregnant", "Seren", "Aldwych-Sample", "female", birth(17, 60))
    s.t_all()
    s.marrow()
    s.fitness()
    s.labs()
    s.infection_screen()
    s.pregnancy_test(POSITIVE)

    s = new("excl-deceased", "Oren", "Mistral-Sample", "male", birth(11, 20), deceased=f"{day(24)}T04:10:00Z")
    s.t_all()
    s.workup(days=30)

    s = new("excl-platelets-8", "Tamsin", "Greyfriars-Sample", "female", birth(7, 300))
    s.t_all()
    s.workup(platelets=8.0)

    s = new("excl-other-malignancy", "Bram", "Evershaw-Sample", "male", birth(16, 15))
    s.t_all()
    s.workup()
    s.condition("osteosarcoma", OSTEOSARCOMA, 730, clinical="remission", abated_days=400)

    s = new("excl-gvhd-prednisone", "Ysolde", "Kestrel-Sample", "female", birth(12, 222))
    s.t_all()
    s.workup()
    s.condition("gvhd", GVHD, 90)
    s.medication("prednisone", PREDNISONE, 60)

    s = new("excl-bilirubin-high", "Cassius", "Fairweather-Sample", "male", birth(5, 45))
    s.t_all()
    s.workup(molar_units=True, bilirubin=82.0)  # 4.8 mg/dL = 4 x ULN 1.2 mg/dL

    s = new("excl-no-all", "Juniper", "Alderney-Sample", "female", birth(10, 11))
    s.condition("asthma", ASTHMA, 1500)
    s.measured("weight", BODY_WEIGHT, 4, 31.2, "kg", category="vital-signs")

    # --- unknown-heavy: never excluded for missing data ---------------------------------------------
    s = new("unknown-icd10-only", "Ezra", "Stonebridge-Sample", "male", birth(9, 120))
    s.condition("dx", ICD_ALL_RELAPSE, 40)  # ALL of unstated lineage
    s.workup()

    s = new("unknown-stale-labs", "Clementine", "Harrowgate-Sample", "female", birth(15, 30))
    s.t_all()
    s.workup(days=10)

    s = new("unknown-no-birth-date", "Idris", "Farrowmere-Sample", "male", None)
    s.t_all()
    s.workup()

    s = new("unknown-supplemental-oxygen", "Sable", "Wintermere-Sample", "female", birth(11, 64))
    s.t_all()
    s.marrow()
    s.fitness(spo2_oxygen=2.0)
    s.labs()
    s.infection_screen()
    s.pregnancy_test()

    s = new("unknown-diagnosis-only", "Quill", "Brightwater-Sample", "male", birth(4, 100))
    s.t_all()

    s = new("unknown-seizure-disorder", "Lorcan", "Ambleside-Sample", "male", birth(14, 3))
    s.t_all()
    s.workup()
    s.condition("seizures", SEIZURE_DISORDER, 1200)  # whether it is uncontrolled needs review
    return samples


def build_bundle() -> dict[str, Any]:
    """The sample population as a FHIR R4 collection Bundle (a plain dict, deterministic)."""
    entries = []
    for sample in _samples():
        for resource in sample.resources:
            key = f"{resource['resourceType']}/{resource['id']}"
            entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(NAMESPACE, key)}", "resource": resource})
    return {
        "resourceType": "Bundle",
        "id": BUNDLE_ID,
        "meta": {
            "tag": [
                {"system": LOCAL, "code": "synthetic", "display": "Synthetic test data"},
                {"system": LOCAL, "code": f"as-of-{AS_OF.isoformat()}", "display": "Screening as-of date"},
            ]
        },
        "identifier": {"system": "http://trial-adapter.org/fhir/sid/sample-bundle", "value": BUNDLE_ID},
        "type": "collection",
        "timestamp": f"{AS_OF.isoformat()}T00:00:00Z",
        "entry": entries,
    }


def render(bundle: dict[str, Any]) -> str:
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SAMPLE_PATH
    target.write_text(render(build_bundle()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
