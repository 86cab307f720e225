"""The trial-matching protocols: MITRE's getClinicalTrial as the matching app calls it, and $match."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhir.resources.R4B.parameters import Parameters

from adapter.screening.results import CriterionResult, PatientResult
from adapter.service.app import ServiceSettings, create_app
from adapter.service.matching import HIGH, SCREENING_EXTENSION, score
from adapter.service.matching_routes import check_origins
from adapter.service.sources import Sources
from tests.support.clinical import AS_OF, candidate_resources, definition
from tests.support.matching_app import app_request

KEY = "match-key-0123456789abcdef"


def client(tmp_path: Path, **extra: Any) -> TestClient:
    settings = ServiceSettings(
        "http://127.0.0.1:9/fhir",
        tmp_path / "inbox.sqlite",
        sources=Sources.from_legacy([f"{KEY}:push"], None),
        process=False,
        cpu_workers=0,
        **extra,
    )
    return TestClient(create_app(settings, definition()))


def as_the_app_sends(test: TestClient, body: Any, **headers: str) -> Any:
    # The app: fetch(url, {cache: 'no-store', method: 'post', headers: {'Content-Type':
    # 'application/json'}, body: JSON.stringify(bundle, null, 2)}); the key is added by the operator's proxy.
    return test.post(
        "/match/getClinicalTrial",
        content=json.dumps(body, indent=2),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **headers},
    )


def criteria(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ext = next(e for e in result["extension"] if e["url"] == SCREENING_EXTENSION)
    out = {}
    for c in (e for e in ext["extension"] if e["url"] == "criterion"):
        parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in c["extension"]}
        out[parts["id"]] = parts
    return out


def test_the_app_request_gets_a_valid_searchset_with_the_study_and_why(tmp_path):
    with client(tmp_path) as test:
        reply = as_the_app_sends(test, app_request())
    assert reply.status_code == 200
    found = reply.json()
    Bundle.model_validate(found)
    assert found["type"] == "searchset" and found["total"] == 1
    entry = found["entry"][0]
    assert entry["search"]["mode"] == "match"
    # A year-only birth date, a Condition without clinicalStatus, an undated ECOG: data to collect.
    assert 0.01 <= entry["search"]["score"] < HIGH
    study = entry["resource"]
    # Not yet recruiting: R4 "approved" (the app lists only "active" studies; the status stays honest).
    assert study["identifier"][0]["value"] == "NCT06849401" and study["status"] == "approved"
    # What the app reads, in the shape it reads it (src/components/Results/utils.ts).
    contained = {(r["resourceType"], r["id"]): r for r in study["contained"]}
    assert all(p["reference"].startswith("#") for p in study["protocol"])
    assert ("Group", "eligibility") in contained and study["enrollment"][0]["display"].strip()
    assert {"text": "Study Type: Interventional"} in study["category"]
    results = criteria(entry)
    assert len(results) == 33
    assert {r["result"] for r in results.values()} <= {"met", "not-met", "unknown"}
    assert all(r.get("toSettle") for r in results.values() if r["result"] == "unknown")
    # The app sends Conditions without ids: named by type, never a reference that cannot resolve.
    assert results["inclusion-2"]["evidence"] == "Condition without an id in the request"
    assert results["inclusion-1"]["evidence"] == "Patient/ctm-synthetic-1"


def test_the_legacy_patient_data_envelope_is_the_same_request(tmp_path):
    with client(tmp_path) as test:
        plain = as_the_app_sends(test, app_request()).json()
        wrapped = as_the_app_sends(test, {"patientData": app_request()}).json()
        as_text = as_the_app_sends(test, {"patientData": json.dumps(app_request())}).json()
    assert plain == wrapped == as_text


def test_a_not_eligible_patient_gets_no_entry(tmp_path):
    request = app_request()
    request["entry"][1]["resource"]["birthDate"] = "1990"  # an adult: inclusion age 2-18 not met
    with client(tmp_path) as test:
        reply = as_the_app_sends(test, request)
    assert reply.status_code == 200
    assert reply.json() == {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def test_phase_and_status_filters_from_the_bundle_parameters(tmp_path):
    def with_filter(name: str, value: str) -> dict[str, Any]:
        request = app_request()
        request["entry"][0]["resource"]["parameter"].append({"name": name, "valueString": value})
        return request

    with client(tmp_path) as test:
        assert as_the_app_sends(test, with_filter("phase", "early-phase-1")).json()["total"] == 1
        assert as_the_app_sends(test, with_filter("phase", "Early Phase 1")).json()["total"] == 1
        assert as_the_app_sends(test, with_filter("phase", "phase-3")).json()["total"] == 0
        assert as_the_app_sends(test, with_filter("recruitmentStatus", "approved")).json()["total"] == 1
        assert as_the_app_sends(test, with_filter("recruitmentStatus", "active")).json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"resourceType": "Patient"}', 400),
        (b'{"patientData": 7}', 400),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', 422),  # no Patient
    ],
)
def test_bad_input_is_answered_as_the_protocol_does(tmp_path, body, status):
    with client(tmp_path) as test:
        reply = test.post(
            "/match/getClinicalTrial",
            content=body,
            headers={"Content-Type": "application/json", "X-API-Key": KEY},
        )
    assert reply.status_code == status
    assert set(reply.json()) == {"error"} and reply.json()["error"]


def test_the_endpoint_needs_a_key_and_says_hello(tmp_path):
    with client(tmp_path) as test:
        reply = test.post("/match/getClinicalTrial", json=app_request())
        assert reply.status_code == 401 and "error" in reply.json()
        assert test.get("/match").text == "Hello from the Clinical Trial Matching Service"


def test_cors_only_for_listed_origins_and_never_a_wildcard(tmp_path):
    origin = "https://matching.example.org"
    with client(tmp_path, cors_origins=[origin]) as test:
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        allowed = test.options(
            "/match/getClinicalTrial",
            headers={**preflight, "Access-Control-Request-Headers": "authorization,content-type"},
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == origin
        assert "access-control-allow-credentials" not in allowed.headers
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = test.options(
            "/match/getClinicalTrial", headers={**preflight, "Origin": "https://evil.example.org"}
        )
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        answer = as_the_app_sends(test, app_request(), Origin=origin)
        assert answer.headers["access-control-allow-origin"] == origin
        # Other paths get no CORS headers at all.
        assert "access-control-allow-origin" not in test.get("/healthz", headers={"Origin": origin}).headers
    with client(tmp_path) as test:  # no --cors-origin: no CORS
        reply = as_the_app_sends(test, app_request(), Origin=origin)
        assert "access-control-allow-origin" not in reply.headers
    for bad in ("*", "matching.example.org", "https://matching.example.org/app"):
        with pytest.raises(ValueError):
            check_origins([bad])


# --- score ------------------------------------------------------------------------------------------


def result_with(*results: tuple[str, str, bool]) -> PatientResult:
    """(type, result, data-decidable) per criterion; a people-decided unknown has only a judgement need."""
    criteria = []
    for index, (kind, outcome, data) in enumerate(results):
        resolve = None
        if outcome == "unknown":
            need = {"kind": "observation" if data else "judgement", "label": "x", "text": "x"}
            need["decidedBy"] = "data" if data else "investigator"
            resolve = {"text": "x", "settles": "all", "needs": [need]}
        criteria.append(
            CriterionResult.model_validate(
                {"id": f"c{index}", "type": kind, "result": outcome, "reason": "r", "resolve": resolve}
            )
        )
    deciding = any((k, r) in {("inclusion", "not-met"), ("exclusion", "met")} for k, r, _ in results)
    return PatientResult(
        patient="Patient/p", status="not-eligible" if deciding else "candidate", criteria=criteria
    )


def test_score_boundaries():
    met, clear = ("inclusion", "met", True), ("exclusion", "not-met", True)
    open_data, judgement = ("inclusion", "unknown", True), ("inclusion", "unknown", False)
    assert score(result_with(met, clear, met, clear)) == 1.0
    assert score(result_with(met, clear, judgement)) == 1.0  # only people decide what is left
    one_open = score(result_with(met, clear, met, open_data))
    assert one_open == round(0.74 * 3 / 4, 2) and one_open < HIGH
    assert score(result_with(met, judgement, open_data)) == round(0.74 * 1 / 2, 2)  # judgement not counted
    assert score(result_with(open_data, open_data, open_data)) == 0.01  # never "No match" for unknowns
    assert score(result_with(met, clear, ("inclusion", "not-met", True))) == 0.0
    assert score(result_with(open_data, ("exclusion", "met", True))) == 0.0


# --- $match ---------------------------------------------------------------------------------------


def match_parameters(bundle: dict[str, Any], *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "trialMatchClinicalData", "resource": bundle},
            {"name": "asOf", "valueDate": AS_OF.isoformat()},
            *extra,
        ],
    }


def own_bundle(birth: str = "2014-06-15") -> dict[str, Any]:
    resources = candidate_resources(birth=birth)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def post_match(test: TestClient, body: Any) -> Any:
    return test.post(
        "/fhir/ResearchStudy/$match",
        content=json.dumps(body),
        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {KEY}"},
    )


def test_match_answers_a_searchset_and_a_result_that_agrees_with_screen(tmp_path):
    bundle = own_bundle()
    with client(tmp_path) as test:
        reply = post_match(test, match_parameters(bundle))
        screened = test.post(
            f"/fhir/ResearchStudy/$screen?asOf={AS_OF.isoformat()}",
            json=bundle,
            headers={"Authorization": f"Bearer {KEY}"},
        ).json()
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/fhir+json")
    out = reply.json()
    Parameters.model_validate(out)
    by_name = {p["name"]: p for p in out["parameter"]}
    found = by_name["trialMatchOutput"]["resource"]
    Bundle.model_validate(found)
    assert found["type"] == "searchset" and found["total"] == 1
    parts = {p["name"]: p for p in by_name["result"]["part"]}
    assert parts["status"]["valueCode"] == "candidate"
    assert found["entry"][0]["search"]["score"] == parts["score"]["valueDecimal"]
    # The same criteria, results and reasons as $screen: one screening call behind both.
    ours = [p["part"] for p in by_name["result"]["part"] if p["name"] == "criterion"]
    theirs = [p["part"] for p in screened["parameter"] if p["name"] == "criterion"]
    assert ours == theirs and len(ours) == 33


def test_match_reports_a_not_eligible_patient_with_score_zero_and_no_entry(tmp_path):
    with client(tmp_path) as test:
        out = post_match(test, match_parameters(own_bundle(birth="1990-01-01"))).json()
    by_name = {p["name"]: p for p in out["parameter"]}
    assert by_name["trialMatchOutput"]["resource"]["total"] == 0
    parts = {p["name"]: p for p in by_name["result"]["part"]}
    assert parts["status"]["valueCode"] == "not-eligible" and parts["score"]["valueDecimal"] == 0.0


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, 400, "Parameters"),
        ({"resourceType": "Parameters", "parameter": []}, 400, "trialMatchClinicalData"),
        (match_parameters(own_bundle(), {"name": "colour", "valueString": "red"}), 400, "colour"),
        (match_parameters(own_bundle(), {"name": "phase", "valueInteger": 1}), 400, "phase"),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "trialMatchClinicalData", "resource": own_bundle()},
                    {"name": "asOf", "valueDate": "tomorrow"},
                ],
            },
            400,
            "asOf",
        ),
        (
            match_parameters({"resourceType": "Bundle", "type": "collection", "entry": []}),
            422,
            "no entries",
        ),
    ],
)
def test_match_bad_input_gets_an_operation_outcome(tmp_path, body, status, text):
    with client(tmp_path) as test:
        reply = post_match(test, body)
    assert reply.status_code == status
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome" and text in outcome["issue"][0]["diagnostics"]


def test_match_is_declared_in_metadata_and_its_definition_is_served(tmp_path):
    with client(tmp_path) as test:
        statement = test.get("/fhir/metadata").json()
        definition_ = test.get("/fhir/OperationDefinition/ResearchStudy-match").json()
    operations = {
        o["name"]: o["definition"] for r in statement["rest"][0]["resource"] for o in r.get("operation", [])
    }
    assert operations["match"] == definition_["url"]
    OperationDefinition.model_validate(definition_)
    assert definition_["code"] == "match" and definition_["resource"] == ["ResearchStudy"]
    names = {(p["name"], p["use"]) for p in definition_["parameter"]}
    assert {("trialMatchClinicalData", "in"), ("trialMatchOutput", "out"), ("result", "out")} <= names


def test_screening_runs_off_the_event_loop(tmp_path, monkeypatch):
    """Both protocols go through the CpuPool (its run), never screening on the loop."""
    from adapter.service import intake

    calls: list[str] = []
    original = intake.CpuPool.run

    async def spy(self: Any, function: Any, *args: Any) -> Any:
        calls.append(function.__name__)
        return await original(self, function, *args)

    monkeypatch.setattr(intake.CpuPool, "run", spy)
    with client(tmp_path) as test:
        as_the_app_sends(test, app_request())
        post_match(test, match_parameters(own_bundle()))
    assert calls.count("mitre_search") == 1 and calls.count("match_operation") == 1


def test_an_internal_failure_is_the_protocols_500(tmp_path, monkeypatch):
    from adapter.service import matching

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(matching, "screen_bundle", broken)
    with client(tmp_path) as test:
        reply = as_the_app_sends(test, app_request())
    assert reply.status_code == 500
    assert reply.json() == {"error": "Internal server error", "exception": "RuntimeError"}


def test_serve_refuses_a_wildcard_cors_origin_in_one_line(tmp_path, capsys, monkeypatch):
    from adapter.cli import main

    monkeypatch.setenv("SERVICE_API_KEYS", f"{KEY}:push")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--fhir-url", "http://127.0.0.1:9/fhir", "--cors-origin", "*"])
    assert exited.value.code == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1].startswith("trial-adapter: error: --cors-origin '*'")
    )
