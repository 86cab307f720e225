"""The leukaemia record of a synthetic ALL patient: T-ALL in all its variants the criteria must tell apart, or another ALL (see synth.py)."""

from __future__ import annotations

import random

from adapter.samples.vocabulary import (
    ALL_REFRACTORY,
    ALL_RELAPSE,
    BM_BLASTS,
    CAR_T,
    CD7_LOCAL,
    CD7_LOINC,
    CREATININE_MASS,
    DYSPNEA_GRADE,
    ECOG,
    GVHD,
    HBV_DNA,
    HCG,
    HCV_RNA,
    HIV,
    ICDO3_B_ALL,
    ICDO3_T_ALL,
    KARNOFSKY,
    LANSKY,
    LVEF,
    MENINGEAL_LEUKAEMIA,
    NEGATIVE,
    O2_FLOW,
    OSTEOSARCOMA,
    PLATELETS,
    POSITIVE,
    PREDNISONE,
    SCT,
    SEIZURE_DISORDER,
    SPO2,
    SYPHILIS,
    T_ALL,
    concept,
    quantity,
)
from bench.synth_codes import (
    ALL_ICD_NOT_REMISSION,
    ALL_ICD_RELAPSE,
    ALL_ICD_REMISSION,
    ALL_SCT,
    BONE_MARROW,
    CAR_T_NCIT,
    DEXAMETHASONE,
    ENOXAPARIN,
    HEART_FAILURE,
    PREGNANT,
    T_ALL_PRECURSOR,
    T_ALL_REMISSION,
    TESTIS,
)
from bench.synth_patient import PatientBuilder


def t_all_record(b: PatientBuilder, variant: random.Random, female: bool, age: int | None) -> None:
    rng = variant
    lineage = rng.choice([[T_ALL], [T_ALL_PRECURSOR], [ICDO3_T_ALL], [T_ALL, ICDO3_T_ALL]])
    b.condition(lineage, rng.randint(200, 1500), body_site=BONE_MARROW)
    status = rng.choices(
        ["relapse", "relapse-icd", "refractory", "new", "remission"], weights=[4, 1, 3, 1, 1]
    )[0]
    if status == "relapse":
        b.condition(ALL_RELAPSE, rng.randint(10, 90))
    elif status == "relapse-icd":
        b.condition(ALL_ICD_RELAPSE, rng.randint(10, 90))
    elif status == "refractory":
        b.condition(ALL_REFRACTORY, rng.randint(10, 90))
    elif status == "remission":
        b.condition(T_ALL_REMISSION, rng.randint(30, 200))
    if rng.random() < 0.9:  # marrow
        b.measured(BM_BLASTS, rng.randint(3, 20), float(rng.randint(5, 90)), "%")
        cd7 = float(rng.choice([rng.randint(60, 79), rng.randint(80, 99), rng.randint(80, 99)]))
        b.measured(rng.choice([CD7_LOCAL, CD7_LOINC]), rng.randint(3, 20), cd7, "%")
    if rng.random() < 0.85:  # fitness
        if age is not None and age < 16:
            b.score(LANSKY, rng.randint(1, 20), rng.choice([50, 70, 80, 90]))
        else:
            b.score(
                rng.choice([ECOG, KARNOFSKY]),
                rng.randint(1, 20),
                rng.choice([0, 1, 2]) if rng.random() < 0.5 else 80,
            )
        b.score(DYSPNEA_GRADE, rng.randint(1, 20), rng.choice([0, 0, 1, 2]))
        b.measured(LVEF, rng.randint(5, 40), float(rng.randint(45, 70)), "%", category="imaging")
        oxygen = rng.choice([None, None, None, 0.0, 2.0])
        components = (
            None
            if oxygen is None
            else [{"code": concept(O2_FLOW), "valueQuantity": quantity(oxygen, "L/min")}]
        )
        b.measured(
            SPO2,
            rng.randint(0, 9),
            float(rng.randint(90, 100)),
            "%",
            category="vital-signs",
            components=components,
        )
    lab_days = rng.choice([1, 2, 3, 5, 7, 10, 25])  # 10 and 25: stale (unknown)
    b.labs(
        lab_days,
        molar=rng.random() < 0.5,
        creatinine_mg=rng.choice([0.4, 0.5, 0.7, 0.9, 1.8]),
        bilirubin_mg=rng.choice([0.4, 0.6, 0.9, 4.2]),
        platelets=float(rng.choice([8, 25, 60, 120, 210])),
    )
    if rng.random() < 0.8:
        b.measured(HBV_DNA, 20, 10.0, "[IU]/mL", comparator="<")
        b.measured(HCV_RNA, 20, 15.0, "[IU]/mL", comparator="<")
        b.coded(HIV, 20, NEGATIVE)
        b.coded(SYPHILIS, 20, rng.choice([NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE]))
    if female and (age or 0) >= 10:
        b.coded(HCG, rng.randint(1, 9), POSITIVE if rng.random() < 0.15 else NEGATIVE)
    # the irregular things a sceptical test needs
    if rng.random() < 0.2:  # a later result recorded in error, which must be ignored
        b.measured(CREATININE_MASS, 0, 4.2, "mg/dL", status="entered-in-error")
    if rng.random() < 0.15:  # dated after the as-of date, must be ignored
        b.measured(PLATELETS, -3, 4.0, "10*9/L")
    if rng.random() < 0.12:
        b.condition(
            MENINGEAL_LEUKAEMIA, rng.randint(5, 60), verification=rng.choice(["confirmed", "refuted"])
        )
    if not female and rng.random() < 0.05:
        b.condition(lineage, rng.randint(5, 60), body_site=TESTIS)
    if rng.random() < 0.12:
        b.procedure(
            rng.choice([CAR_T, CAR_T_NCIT]),
            rng.randint(100, 500),
            status=rng.choice(["completed", "completed", "not-done", "entered-in-error"]),
        )
    if rng.random() < 0.15:
        b.immunization(rng.randint(3, 60))
    if rng.random() < 0.08:
        b.procedure((SCT, "80146002", "Appendectomy"), rng.randint(5, 40), surgical=True)
    if rng.random() < 0.08:
        b.condition(GVHD, rng.randint(30, 200))
        b.medication(rng.choice([PREDNISONE, DEXAMETHASONE]), rng.randint(10, 60))
    if rng.random() < 0.05:
        b.medication(ENOXAPARIN, rng.randint(3, 30))
    if rng.random() < 0.05:
        b.condition(OSTEOSARCOMA, 900, clinical="remission", abated_days=rng.choice([300, 1500]))
    if rng.random() < 0.05:
        b.condition(SEIZURE_DISORDER, rng.randint(300, 2000))
    if rng.random() < 0.04:
        b.condition(HEART_FAILURE, rng.randint(30, 300))
    if female and (age or 0) >= 13 and rng.random() < 0.3:
        b.condition(PREGNANT, rng.randint(10, 80))


def b_all_record(b: PatientBuilder, variant: random.Random) -> None:
    rng = variant
    kind = rng.choice(["icdo3+sct", "icd10cm", "sct-only"])
    if kind == "icdo3+sct":
        b.condition([ALL_SCT, ICDO3_B_ALL], rng.randint(200, 1500), body_site=BONE_MARROW)
    elif kind == "icd10cm":
        b.condition(
            [rng.choice([ALL_ICD_NOT_REMISSION, ALL_ICD_REMISSION, ALL_ICD_RELAPSE]), ICDO3_B_ALL],
            rng.randint(200, 1500),
        )
    else:  # lineage not stated anywhere: screened as unknown
        b.condition(ALL_SCT, rng.randint(200, 1500))
    if rng.random() < 0.5:
        b.condition(ALL_RELAPSE, rng.randint(10, 90))
    b.measured(BM_BLASTS, rng.randint(3, 20), float(rng.randint(5, 90)), "%")
    b.labs(
        rng.choice([1, 3, 8]),
        molar=rng.random() < 0.5,
        creatinine_mg=0.6,
        bilirubin_mg=0.7,
        platelets=float(rng.randint(20, 300)),
    )
