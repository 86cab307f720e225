"""The trial-matching protocols on a running service (process pool, real HTTP) and HAPI's $validate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.support.fhir_data import conformance_resources
from tests.support.matching_app import app_request
from tests.support.patients import candidate_on_server
from tests.support.service import ServiceProcess

KEY = "match-key-0123456789abcdef"
ORIGIN = "https://matching.example.org"


@pytest.fixture(scope="module")
def service(hapi_url, tmp_path_factory) -> Iterator[ServiceProcess]:
    running = ServiceProcess(
        hapi_url,
        tmp_path_factory.mktemp("match") / "inbox.sqlite",
        "--cors-origin",
        ORIGIN,
        "--no-processing",
        keys=f"{KEY}:push",
        default_key=KEY,
    )
    yield running
    assert running.stop() == 0


def validate_on_hapi(hapi_url: str, resource: dict[str, Any]) -> list[dict[str, Any]]:
    # A Parameters body would be read as $validate's own parameters: send it as its "resource".
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]}
    reply = httpx.post(
        f"{hapi_url}/{resource['resourceType']}/$validate",
        json=body if resource["resourceType"] == "Parameters" else resource,
        headers={"Content-Type": "application/fhir+json"},
        timeout=120,
    )
    return [i for i in reply.json().get("issue", []) if i["severity"] in ("error", "fatal")]


def test_the_app_request_on_a_running_service_is_a_searchset_hapi_accepts(service, hapi_url):
    for resource in conformance_resources():  # our profiles, so HAPI knows the study's meta.profile
        httpx.put(
            f"{hapi_url}/{resource['resourceType']}/{resource['id']}",
            json=resource,
            headers={"Content-Type": "application/fhir+json"},
            timeout=60,
        ).raise_for_status()
    # As the app's callWrapper sends it: Content-Type application/json, the Bundle as the body.
    reply = httpx.post(
        f"{service.url}/match/getClinicalTrial",
        content=json.dumps(app_request(), indent=2),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", "Origin": ORIGIN},
        timeout=120,
    )
    assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == ORIGIN
    found = reply.json()
    Bundle.model_validate(found)
    assert found["type"] == "searchset" and found["entry"][0]["search"]["mode"] == "match"
    errors = validate_on_hapi(hapi_url, found)
    assert errors == [], json.dumps([(e.get("diagnostics"), e.get("expression")) for e in errors], indent=1)


def test_match_is_in_metadata_and_its_operation_definition_validates_on_hapi(service, hapi_url):
    statement = httpx.get(f"{service.url}/fhir/metadata", timeout=10).json()
    names = {o["name"] for r in statement["rest"][0]["resource"] for o in r.get("operation", [])}
    assert "match" in names
    definition = httpx.get(f"{service.url}/fhir/OperationDefinition/ResearchStudy-match", timeout=10).json()
    assert validate_on_hapi(hapi_url, definition) == []


def test_preflight_from_a_listed_origin_only(service):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = httpx.options(f"{service.url}/match/getClinicalTrial", headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(
        f"{service.url}/match/getClinicalTrial", headers={"Origin": "https://other.example.org", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


def test_match_answer_validates_on_hapi(service, hapi_url):
    today = date.today()
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in candidate_on_server("match-1", today)],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "trialMatchClinicalData", "resource": bundle}],
    }
    reply = service.post("/fhir/ResearchStudy/$match", body)
    assert reply.status_code == 200
    out = reply.json()
    found = next(p["resource"] for p in out["parameter"] if p["name"] == "trialMatchOutput")
    assert found["total"] == 1 and found["entry"][0]["search"]["score"] > 0
    errors = validate_on_hapi(hapi_url, out)
    assert errors == [], json.dumps([(e.get("diagnostics"), e.get("expression")) for e in errors], indent=1)
