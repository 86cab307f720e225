"""The codes, dates and small FHIR builders the sample population is written with (see sample_population.py).

Every code here is one the criteria read or one the screening must ignore; dates count back from AS_OF."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

AS_OF = date(2026, 11, 23)
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
