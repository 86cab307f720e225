"""An mCODE patient Group as the population (``screen --fhir-url --population-group Group/<id>``) on
HAPI: its members are screened instead of the Condition search, mCODE shapes read as plain FHIR, and
members screening cannot reach are reported in summary.population."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.fhir_data import as_transaction

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcode" / "brian-l-bundle.json"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
AS_OF = "2026-11-23"


def _t_all_patient() -> list[dict[str, Any]]:
    """An mCODE-shaped relapsed T-ALL patient: ALL of any lineage with the T morphology in the
    histology extension, ECOG as the LOINC answer LA9623-5 (= 1)."""
    subject = {"reference": "Patient/mcode-group-t-all"}
    return [
        {"resourceType": "Patient", "id": "mcode-group-t-all", "gender": "female", "birthDate": "2014-06-15"},
        {
            "resourceType": "Condition",
            "id": "mcode-group-t-all-dx",
            "meta": {"profile": [MCODE + "mcode-primary-cancer-condition"]},
            "extension": [
                {
                    "url": MCODE + "mcode-histology-morphology-behavior",
                    "valueCodeableConcept": {"coding": [{"system": ICDO3, "code": "9837/3"}]},
                }
            ],
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {"coding": [{"system": SCT, "code": "91857003"}]},
            "subject": subject,
            "onsetDateTime": "2026-09-01",
        },
        {
            "resourceType": "Observation",
            "id": "mcode-group-t-all-ecog",
            "meta": {"profile": [MCODE + "mcode-ecog-performance-status"]},
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "89247-1"}]},
            "subject": subject,
            "effectiveDateTime": "2026-11-20",
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9623-5"}]},
        },
    ]


def test_group_members_are_the_population(hapi_url: str, tmp_path: Path) -> None:
    bundle = json.loads(FIXTURE.read_text(encoding="utf-8"))
    bundle["entry"] += [{"resource": r} for r in _t_all_patient()]
    group = {
        "resourceType": "Group",
        "id": "mcode-cohort",
        "type": "person",
        "actual": True,
        "member": [
            {"entity": {"reference": "Patient/cancer-patient-brian-l"}},
            {"entity": {"reference": "Patient/mcode-group-t-all"}},
            {"entity": {"display": "a member known only by name"}},
        ],
    }
    bundle["entry"].append({"resource": group})

    async def load() -> None:
        async with FhirClient(hapi_url) as client:
            await client.transaction(as_transaction(bundle), idempotent=True)

    asyncio.run(load())
    out = tmp_path / "group.json"
    args = ["screen", "--fhir-url", hapi_url, "--as-of", AS_OF, "--output", str(out), "--quiet"]
    assert main([*args, "--population-group", "Group/mcode-cohort"]) == 0
    report = json.loads(out.read_text())
    patients = {p["patient"]: p for p in report["patients"]}
    assert set(patients) == {"Patient/cancer-patient-brian-l", "Patient/mcode-group-t-all"}
    assert all(p["status"] != "error" for p in patients.values())
    criteria = {c["id"]: c for c in patients["Patient/mcode-group-t-all"]["criteria"]}
    assert criteria["inclusion-2"]["result"] == "unknown"  # T lineage met; no relapse coded
    assert criteria["inclusion-2"]["reason"].startswith("T-lineage ALL recorded")
    assert criteria["inclusion-7"]["result"] == "met"  # ECOG LA9623-5 = 1
    population = report["summary"]["population"]
    assert "members of Group/mcode-cohort (2 patients)" in population
    assert "1 unreachable members: (member without a reference)" in population


def test_population_group_errors_are_one_line(hapi_url: str, tmp_path: Path, capsys: Any) -> None:
    args = ["screen", "--fhir-url", hapi_url, "--as-of", AS_OF, "--output", str(tmp_path / "x.json")]
    cases = [
        ([*args, "--population-group", "Patient/nope"], "expected Group/<id>"),
        ([*args, "--population-group", "Group/no-such-group-here"], "404"),
        (["screen", "--sample", "--population-group", "Group/x"], "needs --fhir-url"),
    ]
    for argv, said in cases:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code not in (0, None)
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err
    assert not (tmp_path / "x.json").exists()
