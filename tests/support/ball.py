"""B-ALL shaped patients for the second study fixture (tests/fixtures/studies/cd19-ball-test): coded
B lineage, B-ALL named only in words, T lineage, and someone outside the population. Fictional."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "studies" / "cd19-ball-test"
SCT = "http://snomed.info/sct"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
LOCAL = "http://hospital.example.org/fhir/CodeSystem/problem-list"  # a site's own codes

# The codes below are the fixture's own (copied there, with their sources, from NCT06849401's file).
B_ALL = (ICDO3, "9811/3", "B lymphoblastic leukemia/lymphoma, NOS")
T_ALL = (SCT, "277575008", "T-cell acute lymphoblastic leukemia")
RELAPSE = (SCT, "12301000132103", "Acute lymphoid leukemia relapse")
ASTHMA = (SCT, "195967001", "Asthma")  # SNOMED CT Asthma (disorder), as in test_terminology_conceptmap.py


def patient(pid: str, birth: str = "2015-03-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": birth}


def condition(
    pid: str, n: int, coding: tuple[str, str, str] | None, text: str | None = None
) -> dict[str, Any]:
    code: dict[str, Any] = {}
    if coding:
        system, value, display = coding
        code["coding"] = [{"system": system, "code": value, "display": display}]
    if text:
        code["text"] = text
    return {
        "resourceType": "Condition",
        "id": f"{pid}-c{n}",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2025-06-01",
    }


def ball_patients(prefix: str = "") -> dict[str, list[dict[str, Any]]]:
    """Each patient's resources, by id (``prefix``: unique ids on a shared server)."""
    return {prefix + pid: _prefixed(resources, prefix) for pid, resources in _patients().items()}


def _prefixed(resources: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    out = []
    for resource in resources:
        resource = {**resource, "id": prefix + resource["id"]}
        if "subject" in resource:
            resource["subject"] = {"reference": "Patient/" + prefix + resource["subject"]["reference"][8:]}
        out.append(resource)
    return out


def _patients() -> dict[str, list[dict[str, Any]]]:
    return {
        "b-coded": [
            patient("b-coded"),
            condition("b-coded", 1, B_ALL),
            condition("b-coded", 2, RELAPSE),
        ],
        # Only words: a local code whose display and text say B-ALL (found by the study's own wording:
        # population.text in files, the "B-ALL" text-search prefix on a server).
        "b-words": [
            patient("b-words"),
            condition(
                "b-words", 1, (LOCAL, "PL-4711", "B-ALL, second relapse"), text="B-ALL, second relapse"
            ),
        ],
        # Lymphoblastic lymphoma in words: no diagnosis wording names it, only the population's text.
        "b-lbl": [patient("b-lbl"), condition("b-lbl", 1, None, text="B-LBL, mediastinal")],
        "t-coded": [patient("t-coded"), condition("t-coded", 1, T_ALL), condition("t-coded", 2, RELAPSE)],
        "asthma": [patient("asthma"), condition("asthma", 1, ASTHMA)],
    }


def write_export(folder: Path) -> Path:
    """The patients as a Bulk Data export (one NDJSON file per type)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for resources in ball_patients().values():
        for resource in resources:
            by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def ball_bundle(prefix: str = "") -> dict[str, Any]:
    entries = [{"resource": r} for resources in ball_patients(prefix).values() for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def write_bundle(path: Path) -> Path:
    path.write_text(json.dumps(ball_bundle()))
    return path
