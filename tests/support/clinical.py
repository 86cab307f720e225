"""Small builders for FHIR R4 resources (plain dicts) and a screening shortcut for the unit tests.

Every builder returns a minimal resource about patient ``p1`` unless told otherwise. Dates are given
as days before the as-of date (``ago=7``), so a test reads like the rule it checks.

    result = evaluate("inclusion-5", obs(CD7_LOCAL, 80.1, "%"))
    assert result.result == "met"

Test modules import these helpers directly: ``from tests.support.clinical import obs, evaluate``.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from adapter.screening.engine import Screener
from adapter.screening.results import CriterionResult, PatientResult
from mappings.clinical.record import PatientRecord, RecordBuilder
from mappings.criteria import CriteriaDefinition, load_criteria

REPO = Path(__file__).resolve().parents[2]
CRITERIA_PATH = REPO / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"
AS_OF = date(2026, 11, 23)

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
LOCAL = "http://trial-adapter.org/fhir/CodeSystem/trial-adapter-local"
UCUM = "http://unitsofmeasure.org"
CVX = "http://hl7.org/fhir/sid/cvx"

# Codes used across the tests: (system, code).
T_ALL = (SCT, "277575008")
ALL_RELAPSE = (SCT, "12301000132103")
ALL_REFRACTORY = (SCT, "12311000132101")
ALL_ANY_LINEAGE = (SCT, "91857003")
ICD_ALL_RELAPSE = (ICD10CM, "C91.02")
ICDO3_T_ALL = (ICDO3, "9837/3")
ICDO3_B_ALL = (ICDO3, "9811/3")
MENINGEAL_LEUKAEMIA = (SCT, "722795004")
TESTIS = (SCT, "40689003")
GVHD = (SCT, "234646005")
PREGNANT = (SCT, "77386006")
CAR_T = (SCT, "1156961008")
SURGICAL_PROCEDURE = (SCT, "387713003")
PREDNISONE = (RXNORM, "8640")
TACROLIMUS = (RXNORM, "42316")
WARFARIN = (RXNORM, "11289")
HEPARIN_ATC = (ATC, "B01AB01")

BM_BLASTS = (LOINC, "11150-0")
CD7_LOCAL = (LOCAL, "cd7-positive-blasts")
CD7_LOINC = (LOINC, "35641-0")
ECOG = (LOINC, "89247-1")
KARNOFSKY = (LOINC, "89243-0")
LANSKY = (NCIT, "C38144")
LVEF = (LOINC, "10230-1")
DYSPNEA_GRADE = (LOCAL, "ctcae-dyspnea-grade")
SPO2 = (LOINC, "59408-5")
O2_FLOW = (LOINC, "3151-8")
O2_CONCENTRATION = (LOINC, "3150-0")
BILIRUBIN_MASS = (LOINC, "1975-2")
BILIRUBIN_MOLES = (LOINC, "14631-6")
AST = (LOINC, "1920-8")
ALT = (LOINC, "1742-6")
CREATININE_MASS = (LOINC, "2160-0")
CREATININE_MOLES = (LOINC, "14682-9")
HCG = (LOINC, "2118-8")
HBV_DNA = (LOINC, "42595-9")
HCV_RNA = (LOINC, "11011-4")
HIV = (LOINC, "56888-1")
SYPHILIS = (LOINC, "24110-9")
PLATELETS = (LOINC, "777-3")

ORAL_ROUTE = (SCT, "26643006")
INHALED_ROUTE = (SCT, "18679011000001101")
POSITIVE = (SCT, "10828004")
NEGATIVE = (SCT, "260385009")

INCLUSION_IDS = [f"inclusion-{n}" for n in range(1, 14)]
EXCLUSION_IDS = [f"exclusion-{n}" for n in range(1, 21)]
ALL_CRITERION_IDS = INCLUSION_IDS + EXCLUSION_IDS

_serial = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}"


def days_ago(n: int, as_of: date = AS_OF) -> str:
    """The ISO date ``n`` days before the as-of date (negative: in the future)."""
    return (as_of - timedelta(days=n)).isoformat()


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def quantity(value: float, unit: str, comparator: str | None = None, system: str = UCUM) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, "unit": unit, "system": system, "code": unit}
    if comparator:
        q["comparator"] = comparator
    return q


def ref(patient_id: str = "p1") -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


# --- resources ----------------------------------------------------------------------------------


def patient(
    birth: str | None = "2014-06-15",
    gender: str | None = "female",
    *,
    id: str = "p1",
    deceased: bool | str | None = None,
) -> dict[str, Any]:
    """A Patient; ``deceased`` is a boolean (deceasedBoolean) or a date string (deceasedDateTime)."""
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id, "name": [{"family": "Test"}]}
    if gender is not None:
        resource["gender"] = gender
    if birth is not None:
        resource["birthDate"] = birth
    if isinstance(deceased, bool):
        resource["deceasedBoolean"] = deceased
    elif deceased is not None:
        resource["deceasedDateTime"] = deceased
    return resource


def born_years_ago(years: int, extra_days: int = 0, as_of: date = AS_OF) -> str:
    """A birth date making the patient ``years`` old on as-of, ``extra_days`` further back (or forward)."""
    birthday = as_of.replace(year=as_of.year - years)
    return (birthday - timedelta(days=extra_days)).isoformat()


def condition(
    code: tuple[str, str],
    *,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    onset: str | None = None,
    abated: str | None = None,
    recorded: str | None = None,
    body_site: tuple[str, str] | None = None,
    extra_codes: list[tuple[str, str]] | None = None,
    subject: str = "p1",
    id: str | None = None,
) -> dict[str, Any]:
    system, value = code
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": id or _new_id("cond"),
        "subject": ref(subject),
        "code": {
            "coding": [
                {"system": system, "code": value},
                *({"system": s, "code": c} for s, c in extra_codes or ()),
            ]
        },
    }
    if clinical is not None:
        resource["clinicalStatus"] = concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", clinical
        )
    if verification is not None:
        resource["verificationStatus"] = concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", verification
        )
    if onset is not None:
        resource["onsetDateTime"] = onset
    if abated is not None:
        resource["abatementDateTime"] = abated
    if recorded is not None:
        resource["recordedDate"] = recorded
    if body_site is not None:
        resource["bodySite"] = [concept(*body_site)]
    return resource


def t_all_relapsed(**kwargs: Any) -> list[dict[str, Any]]:
    """The inclusion-2 diagnosis pair: a SNOMED T-ALL Condition and an ALL-relapse Condition."""
    return [condition(T_ALL, **kwargs), condition(ALL_RELAPSE, **kwargs)]


def reference_range(
    high: float | None,
    unit: str,
    *,
    low: float | None = None,
    age: tuple[float | None, float | None] | None = None,
    sex: str | None = None,
    type_code: str | None = "normal",
) -> dict[str, Any]:
    """A normal reference range; ``age`` is (low, high) in years, ``sex`` 'male' or 'female'."""
    rr: dict[str, Any] = {}
    if low is not None:
        rr["low"] = quantity(low, unit)
    if high is not None:
        rr["high"] = quantity(high, unit)
    if type_code is not None:
        rr["type"] = concept("http://terminology.hl7.org/CodeSystem/referencerange-meaning", type_code)
    if sex is not None:
        rr["appliesTo"] = [concept("http://hl7.org/fhir/administrative-gender", sex)]
    if age is not None:
        rr["age"] = {k: quantity(v, "a") for k, v in zip(("low", "high"), age, strict=True) if v is not None}
    return rr


def obs(
    code: tuple[str, str],
    value: float | None = None,
    unit: str | None = None,
    *,
    ago: int | None = 0,
    effective: str | None = None,
    status: str = "final",
    comparator: str | None = None,
    uln: float | None = None,
    uln_unit: str | None = None,
    ranges: list[dict[str, Any]] | None = None,
    answer: tuple[str, str] | None = None,
    text: str | None = None,
    components: list[dict[str, Any]] | None = None,
    subject: str = "p1",
    id: str | None = None,
) -> dict[str, Any]:
    """An Observation dated ``ago`` days before as-of (or at ``effective``; ``ago=None`` is undated).

    A numeric value goes into valueQuantity (UCUM ``unit``, optional ``comparator``); ``answer`` makes a
    coded valueCodeableConcept. ``uln`` adds a normal reference range whose ``high`` is the upper limit,
    in ``uln_unit`` (default: the result's unit).
    """
    system, value_code = code
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id or _new_id("obs"),
        "status": status,
        "code": {"coding": [{"system": system, "code": value_code}]},
        "subject": ref(subject),
    }
    if effective is not None:
        resource["effectiveDateTime"] = effective
    elif ago is not None:
        resource["effectiveDateTime"] = days_ago(ago)
    if value is not None:
        if unit is None:
            resource["valueInteger"] = value
        else:
            resource["valueQuantity"] = quantity(value, unit, comparator)
    if answer is not None:
        resource["valueCodeableConcept"] = concept(*answer)
    if text is not None:
        resource["valueCodeableConcept"] = {"text": text}
    rr = list(ranges or ())
    if uln is not None:
        rr.append(reference_range(uln, uln_unit or unit or ""))
    if rr:
        resource["referenceRange"] = rr
    if components:
        resource["component"] = components
    return resource


def component(code: tuple[str, str], value: float, unit: str) -> dict[str, Any]:
    return {"code": concept(*code), "valueQuantity": quantity(value, unit)}


def medication(
    code: tuple[str, str],
    *,
    status: str = "active",
    route: tuple[str, str] | None = ORAL_ROUTE,
    resource_type: str = "MedicationRequest",
    start_ago: int | None = 30,
    end_ago: int | None = None,
    subject: str = "p1",
    id: str | None = None,
) -> dict[str, Any]:
    """A MedicationRequest (authoredOn, dosageInstruction) or MedicationStatement (effectivePeriod, dosage)."""
    resource: dict[str, Any] = {
        "resourceType": resource_type,
        "id": id or _new_id("med"),
        "status": status,
        "medicationCodeableConcept": concept(*code),
        "subject": ref(subject),
    }
    dosage_key = "dosageInstruction" if resource_type == "MedicationRequest" else "dosage"
    if route is not None:
        resource[dosage_key] = [{"route": concept(*route)}]
    if resource_type == "MedicationRequest":
        resource["intent"] = "order"
        if start_ago is not None:
            resource["authoredOn"] = days_ago(start_ago)
        if end_ago is not None:
            resource["dispenseRequest"] = {"validityPeriod": {"end": days_ago(end_ago)}}
    else:
        period = {}
        if start_ago is not None:
            period["start"] = days_ago(start_ago)
        if end_ago is not None:
            period["end"] = days_ago(end_ago)
        if period:
            resource["effectivePeriod"] = period
    return resource


def procedure(
    code: tuple[str, str] | None = None,
    *,
    ago: int | None = 100,
    status: str = "completed",
    category: tuple[str, str] | None = None,
    subject: str = "p1",
    id: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": id or _new_id("proc"),
        "status": status,
        "code": concept(*code) if code else {"text": "operation"},
        "subject": ref(subject),
    }
    if category is not None:
        resource["category"] = concept(*category)
    if ago is not None:
        resource["performedDateTime"] = days_ago(ago)
    return resource


def immunization(
    *, ago: int | None = 10, status: str = "completed", subject: str = "p1", id: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": id or _new_id("imm"),
        "status": status,
        "vaccineCode": concept(CVX, "140", "Influenza, seasonal, injectable"),
        "patient": ref(subject),
    }
    if ago is not None:
        resource["occurrenceDateTime"] = days_ago(ago)
    return resource


# --- screening ----------------------------------------------------------------------------------


@cache
def definition() -> CriteriaDefinition:
    return load_criteria(CRITERIA_PATH)


@cache
def screener(as_of: date = AS_OF) -> Screener:
    return Screener(definition(), as_of)


def record_of(*resources: dict[str, Any]) -> PatientRecord:
    """The record of the only patient; a default ``patient()`` is added when none is given."""
    builder = RecordBuilder()
    if not any(r["resourceType"] == "Patient" for r in resources):
        builder.add(patient())
    for resource in resources:
        builder.add(resource)
    records = list(builder.records())
    assert len(records) == 1, "record_of() is for one patient"
    return records[0]


def screen(*resources: dict[str, Any], as_of: date = AS_OF) -> PatientResult:
    return screener(as_of).screen(record_of(*resources))


def result_of(result: PatientResult, criterion_id: str) -> CriterionResult:
    return next(c for c in result.criteria if c.id == criterion_id)


def evaluate(criterion_id: str, *resources: dict[str, Any], as_of: date = AS_OF) -> CriterionResult:
    """Screen these resources and return one criterion's result."""
    return result_of(screen(*resources, as_of=as_of), criterion_id)


# --- a complete candidate -----------------------------------------------------------------------


def candidate_resources(gender: str = "female", birth: str = "2014-06-15") -> list[dict[str, Any]]:
    """A record where every computable inclusion is met and every computable exclusion not-met."""
    resources = [
        patient(birth, gender),
        *t_all_relapsed(onset="2026-09-01"),
        obs(BM_BLASTS, 32, "%", ago=5),
        obs(CD7_LOCAL, 93.5, "%", ago=5),
        obs(ECOG, 1, "{score}", ago=3),
        obs(LVEF, 62, "%", ago=6),
        obs(DYSPNEA_GRADE, 0, "{grade}", ago=3),
        obs(SPO2, 98, "%", ago=1),
        obs(BILIRUBIN_MASS, 0.6, "mg/dL", ago=2, uln=1.2),
        obs(AST, 35, "U/L", ago=2, uln=40),
        obs(ALT, 28, "U/L", ago=2, uln=45),
        obs(CREATININE_MOLES, 45, "umol/L", ago=2),
        obs(PLATELETS, 85, "10*9/L", ago=2),
        obs(HBV_DNA, 10, "[IU]/mL", comparator="<", ago=20),
        obs(HCV_RNA, 15, "[IU]/mL", comparator="<", ago=20),
        obs(HIV, answer=NEGATIVE, ago=20),
        obs(SYPHILIS, answer=NEGATIVE, ago=20),
    ]
    if gender != "male":
        resources.append(obs(HCG, answer=NEGATIVE, ago=2))
    return resources
