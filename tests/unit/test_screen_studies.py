"""$screen and the matching protocols with several served studies: one answer per study; one study as ever."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.service.app import ServiceSettings, create_app
from adapter.service.sources import Sources
from adapter.studies import served
from mappings.criteria import load_criteria
from tests.support.b_all import STUDY, STUDY_DIR, b_all_candidate_resources
from tests.support.clinical import AS_OF, candidate_resources, definition

KEY = "screen-studies-key-0123456789abcdef"
SCREEN = f"/fhir/ResearchStudy/$screen?asOf={AS_OF.isoformat()}"


def app(tmp_path: Path, definitions: Any) -> TestClient:
    settings = ServiceSettings(
        "http://127.0.0.1:9/fhir",
        tmp_path / "inbox.sqlite",
        sources=Sources.from_legacy([f"{KEY}:push"], None),
        process=False,
        cpu_workers=0,
        study_files={STUDY: STUDY_DIR / "study.json"},  # the fixture is not installed: its record by path
    )
    return TestClient(create_app(settings, definitions))


@pytest.fixture
def both(tmp_path: Path) -> Iterator[TestClient]:
    with app(tmp_path, [definition(), load_criteria(STUDY_DIR / "criteria.yaml")]) as client:
        yield client


def screen(client: TestClient, resources: list[dict[str, Any]], accept: str = "application/fhir+json") -> Any:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {KEY}", "Accept": accept}
    reply = client.post(SCREEN, content=json.dumps(bundle), headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def statuses(parameters: dict[str, Any]) -> dict[str, str]:
    out = {}
    for study in parameters["parameter"]:
        parts = {p["name"]: p for p in study["part"]}
        out[parts["id"]["valueString"]] = parts["status"]["valueCode"]
    return out


def test_each_patient_is_answered_for_every_study(both):
    assert statuses(screen(both, b_all_candidate_resources())) == {
        definition().study: "not-eligible",
        STUDY: "candidate",
    }
    assert statuses(screen(both, candidate_resources())) == {
        definition().study: "candidate",
        STUDY: "not-eligible",
    }
    reports = screen(both, b_all_candidate_resources(), accept="application/json")["studies"]
    assert [r["patients"][0]["status"] for r in reports] == ["not-eligible", "candidate"]


def test_one_study_answers_as_before(tmp_path):
    with app(tmp_path, definition()) as client:
        answer = screen(client, candidate_resources())
    assert {p["name"] for p in answer["parameter"]} >= {"patient", "asOf", "status", "criterion"}


def test_a_study_given_twice_is_refused():
    with pytest.raises(ValueError, match="more than once"):
        served([definition(), definition()])


def match(client: TestClient, resources: list[dict[str, Any]]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "trialMatchClinicalData", "resource": bundle},
            {"name": "asOf", "valueDate": AS_OF.isoformat()},
        ],
    }
    headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {KEY}"}
    reply = client.post("/fhir/ResearchStudy/$match", content=json.dumps(parameters), headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_matching_lists_the_studies_a_patient_fits_and_a_result_for_each(both):
    answer = match(both, b_all_candidate_resources())
    [output] = [p["resource"] for p in answer["parameter"] if p["name"] == "trialMatchOutput"]
    assert [e["resource"]["identifier"][0]["value"] for e in output["entry"]] == [STUDY]
    results = [{q["name"]: q for q in p["part"]} for p in answer["parameter"] if p["name"] == "result"]
    assert [r["status"]["valueCode"] for r in results] == ["not-eligible", "candidate"]
    assert [r["score"]["valueDecimal"] > 0 for r in results] == [False, True]
