"""The codes the synthetic hospital writes: those the criteria read and the noise they must ignore (see synth.py)."""

from __future__ import annotations

from adapter.samples.vocabulary import (
    CVX,
    ICD10CM,
    LOINC,
    NCIT,
    RXNORM,
    SCT,
    Code,
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
