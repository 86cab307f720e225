"""Patients for the second study (tests/fixtures/studies/cd19-ball-test, NCT00000000, a test fixture):
a relapsed B-ALL child who meets every computable inclusion of it and none of its exclusions.

Built from the unit-test builders as tests/support/patients.py builds the T-ALL candidate; codes are
the fixture's (copied there, with their sources, from NCT06849401's criteria).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from tests.support.clinical import (
    ALL_RELAPSE,
    ALT,
    BILIRUBIN_MASS,
    BM_BLASTS,
    CREATININE_MOLES,
    HBV_DNA,
    HCG,
    HCV_RNA,
    HIV,
    ICDO3_B_ALL,
    LOCAL,
    LOINC,
    LVEF,
    NEGATIVE,
    condition,
    obs,
    patient,
)
from tests.support.patients import localise

STUDY_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "studies" / "cd19-ball-test"
STUDY = "NCT00000000"
CD19_LOCAL = (LOCAL, "cd19-positive-blasts")  # the fixture's local CD19 code
KARNOFSKY = (LOINC, "89243-0")  # Karnofsky Performance Status score (as in the fixture's concept set)


def b_all_candidate_resources(gender: str = "male", birth: str = "2015-03-02") -> list[dict[str, Any]]:
    """Relapsed B-ALL (ICD-O-3 9811/3 + ALL relapse), CD19-positive, fit, organs fine, no infections."""
    resources = [
        patient(birth, gender),
        condition(ICDO3_B_ALL, onset="2026-09-01"),
        condition(ALL_RELAPSE, onset="2026-09-01"),
        obs(CD19_LOCAL, 88.0, "%", ago=5),
        obs(BM_BLASTS, 24, "%", ago=5),
        obs(KARNOFSKY, 80, "{score}", ago=3),
        obs(CREATININE_MOLES, 45, "umol/L", ago=2),
        obs(ALT, 28, "U/L", ago=2, uln=45),
        obs(BILIRUBIN_MASS, 0.6, "mg/dL", ago=2, uln=1.2),
        obs(LVEF, 60, "%", ago=6),
        obs(HBV_DNA, 10, "[IU]/mL", comparator="<", ago=20),
        obs(HCV_RNA, 15, "[IU]/mL", comparator="<", ago=20),
        obs(HIV, answer=NEGATIVE, ago=20),
    ]
    if gender != "male":
        resources.append(obs(HCG, answer=NEGATIVE, ago=2))
    return resources


def b_all_candidate_on_server(patient_id: str, today: date, gender: str = "male") -> list[dict[str, Any]]:
    return localise(b_all_candidate_resources(gender=gender), patient_id, today)
