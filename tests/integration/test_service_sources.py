"""Sources against HAPI: one source can never overwrite, hide or read another's data (issue 13)."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.service.sources import SOURCE_SYSTEM, SOURCE_URI
from tests.support.server import engine_bundle
from tests.support.service import ServiceProcess

KEY_A = "hospital-a-key-0123456789"
KEY_B = "hospital-b-key-0123456789"
KEY_ADMIN = "admin-key-for-sources-0123456789"
MRN_A = "urn:oid:1.2.36.146.595.217.0.1"  # engine_bundle's MRN system
MRN_B = "urn:oid:2.16.840.1.113883.19.5"
LAB = "urn:lab:accession"


def sources_file(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "sources": [
                    {"name": "hospital-a", "keys": [KEY_A], "identifier_systems": [MRN_A]},
                    {
                        "name": "hospital-b",
                        "keys": [KEY_B],
                        "identifier_systems": [MRN_B],
                        "resource_types": ["Patient", "Observation", "Condition", "Procedure"],
                    },
                ],
                "admin_keys": [KEY_ADMIN],
            }
        )
    )
    return path


def start(hapi_url: str, tmp: Path, *extra: str) -> ServiceProcess:
    return ServiceProcess(
        hapi_url,
        tmp / "inbox.sqlite",
        "--sources",
        str(sources_file(tmp / "sources.json")),
        "--retry-backoff",
        "0.2",
        *extra,
        keys=None,
        default_key=KEY_A,
    )


@pytest.fixture(scope="module")
def service(hapi_url, tmp_path_factory) -> Iterator[ServiceProcess]:
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    running = start(hapi_url, tmp_path_factory.mktemp("sources"))
    yield running
    assert running.stop() == 0


def bundle_for(system: str, mrn: str) -> dict:
    """engine_bundle with the MRN in ``system``: the same engine ids (12345, 901, ...) every time."""
    bundle = engine_bundle(mrn, date.today())
    bundle["entry"][0]["resource"]["identifier"] = [{"system": system, "value": mrn}]
    return bundle


def on_server(hapi_url: str, resource_type: str, params: dict) -> list[dict]:
    async def go() -> list[dict]:
        async with FhirClient(hapi_url) as client:
            return await client.search_resources(resource_type, params)

    return asyncio.run(go())


def status(service: ServiceProcess, location: str, key: str) -> httpx.Response:
    return httpx.get(f"{service.url}{location}", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def wait(service: ServiceProcess, location: str, key: str, timeout: float = 90) -> dict:
    service.default_key = key
    try:
        return service.wait_done(location, timeout=timeout)
    finally:
        service.default_key = KEY_A


def test_two_sources_with_the_same_engine_ids_never_overwrite_each_other(service, hapi_url):
    mrn_a, mrn_b = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    a = service.post("/fhir", bundle_for(MRN_A, mrn_a), key=KEY_A)
    b = service.post("/fhir", bundle_for(MRN_B, mrn_b), key=KEY_B)
    assert a.status_code == 202 and b.status_code == 202, (a.text, b.text)
    assert wait(service, a.headers["Location"], KEY_A)["state"] == "done"
    assert wait(service, b.headers["Location"], KEY_B)["state"] == "done"
    [patient_a] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_A}|{mrn_a}"})
    [patient_b] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_B}|{mrn_b}"})
    obs_a = on_server(hapi_url, "Observation", {"subject": f"Patient/{patient_a['id']}"})
    obs_b = on_server(hapi_url, "Observation", {"subject": f"Patient/{patient_b['id']}"})
    sent = sum(1 for e in bundle_for(MRN_A, "x")["entry"] if e["resource"]["resourceType"] == "Observation")
    assert len(obs_a) == len(obs_b) == sent  # the same engine ids, two patients' data, nothing moved
    assert not {o["id"] for o in obs_a} & {o["id"] for o in obs_b}
    assert patient_a["meta"]["source"].startswith(f"{SOURCE_URI}/hospital-a")
    assert all(o["meta"]["source"].startswith(f"{SOURCE_URI}/hospital-b") for o in obs_b)
    provenance = on_server(hapi_url, "Provenance", {"target": f"Patient/{patient_b['id']}"})
    assert [p["agent"][0]["who"]["identifier"] for p in provenance] == [
        {"system": SOURCE_SYSTEM, "value": "hospital-b"}
    ]


def test_one_engine_reusing_ids_for_two_patients_keeps_both(service, hapi_url):
    first, second = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    for mrn in (first, second):
        reply = service.post("/fhir", bundle_for(MRN_A, mrn), key=KEY_A)
        assert wait(service, reply.headers["Location"], KEY_A)["state"] == "done"
    for mrn in (first, second):
        [patient] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_A}|{mrn}"})
        assert on_server(hapi_url, "Observation", {"subject": f"Patient/{patient['id']}"})


def test_a_reused_key_with_other_content_is_refused_and_never_blocks_another_source(service):
    key = uuid.uuid4().hex
    mrn = uuid.uuid4().hex[:12]
    first = service.post("/fhir", bundle_for(MRN_A, mrn), key=KEY_A, **{"Idempotency-Key": key})
    same = service.post("/fhir", bundle_for(MRN_A, mrn), key=KEY_A, **{"Idempotency-Key": key})
    other = service.post("/fhir", bundle_for(MRN_A, mrn + "x"), key=KEY_A, **{"Idempotency-Key": key})
    assert first.status_code == 202 and same.status_code == 200
    assert same.headers["Location"] == first.headers["Location"]
    assert other.status_code == 409, other.text
    outcome = other.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "conflict"
    # The same key from another source is that source's own key: accepted.
    elsewhere = service.post("/fhir", bundle_for(MRN_B, mrn), key=KEY_B, **{"Idempotency-Key": key})
    assert elsewhere.status_code == 202
    # Bundle.identifier works the same way.
    bundle = bundle_for(MRN_A, mrn) | {"identifier": {"system": "urn:engine:msg", "value": key}}
    assert service.post("/fhir", bundle, key=KEY_A).status_code == 202
    changed = copy.deepcopy(bundle)
    changed["entry"][0]["resource"]["gender"] = "male"
    assert service.post("/fhir", changed, key=KEY_A).status_code == 409


def test_a_source_cannot_create_or_update_another_sources_patient(service, hapi_url):
    mrn = uuid.uuid4().hex[:12]
    done = service.post("/fhir", bundle_for(MRN_A, mrn), key=KEY_A)
    assert wait(service, done.headers["Location"], KEY_A)["state"] == "done"
    before = sum(service.inbox().values())
    hostile = bundle_for(MRN_A, mrn)  # B sends a Patient under A's MRN system: a birth date making her 26
    hostile["entry"][0]["resource"]["birthDate"] = "2000-01-01"
    reply = service.post("/fhir", hostile, key=KEY_B)
    assert reply.status_code == 403, reply.text
    issue = reply.json()["issue"][0]
    assert issue["code"] == "forbidden" and "authoritative" in issue["diagnostics"]
    # A conditional reference to A's patient by A's MRN: refused too.
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient?identifier={MRN_A}|{mrn}"},
    }
    assert service.post("/fhir/Observation", observation, key=KEY_B).status_code == 403
    # A resource type B may not write.
    medication = {"resourceType": "Medication", "code": {"text": "x"}}
    assert service.post("/fhir/Medication", medication, key=KEY_B).status_code == 403
    assert sum(service.inbox().values()) == before  # nothing stored
    [patient] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_A}|{mrn}"})
    assert patient["birthDate"] != "2000-01-01" and patient["meta"]["versionId"] == "1"


def test_non_authoritative_identifiers_are_namespaced_by_source(service, hapi_url):
    mrn = uuid.uuid4().hex[:12]
    bundle = bundle_for(MRN_B, mrn)
    observation = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    observation["identifier"] = [{"system": LAB, "value": mrn}]
    reply = service.post("/fhir", bundle, key=KEY_B)
    assert wait(service, reply.headers["Location"], KEY_B)["state"] == "done"
    assert on_server(hapi_url, "Observation", {"identifier": f"{LAB}|{mrn}"}) == []
    [found] = on_server(hapi_url, "Observation", {"identifier": f"{SOURCE_SYSTEM}/hospital-b|{LAB}|{mrn}"})
    assert found["meta"]["source"].startswith(f"{SOURCE_URI}/hospital-b")


def test_put_by_server_id_updates_that_resource_never_a_copy(service, hapi_url):
    mrn = uuid.uuid4().hex[:12]
    first = service.post("/fhir", bundle_for(MRN_A, mrn), key=KEY_A)
    assert wait(service, first.headers["Location"], KEY_A)["state"] == "done"
    [patient] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_A}|{mrn}"})
    updated = {k: v for k, v in patient.items() if k != "meta"} | {"gender": "male"}
    reply = httpx.put(
        f"{service.url}/fhir/Patient/{patient['id']}",
        content=json.dumps(updated),
        headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert reply.status_code == 202, reply.text
    assert wait(service, reply.headers["Location"], KEY_A)["state"] == "done"
    [after] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_A}|{mrn}"})
    assert after["id"] == patient["id"] and after["gender"] == "male" and after["meta"]["versionId"] == "2"
    # Another source addressing A's Observation by its server id is refused, and nothing changes.
    [obs] = on_server(hapi_url, "Observation", {"subject": f"Patient/{patient['id']}", "_count": "1"})[:1]
    hostile = {k: v for k, v in obs.items() if k != "meta"} | {"subject": {"reference": "Patient/nobody"}}
    reply = httpx.put(
        f"{service.url}/fhir/Observation/{obs['id']}",
        content=json.dumps(hostile),
        headers={"Authorization": f"Bearer {KEY_B}", "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert reply.status_code == 202
    dead = wait(service, reply.headers["Location"], KEY_B)
    assert dead["state"] == "dead" and "another source" in dead["error"], dead
    [unchanged] = on_server(hapi_url, "Observation", {"_id": obs["id"]})
    assert unchanged["meta"]["versionId"] == obs["meta"]["versionId"]


def test_status_shows_a_push_key_only_its_own_payloads_without_patient_data(service):
    mine = service.post("/fhir", bundle_for(MRN_A, uuid.uuid4().hex[:12]), key=KEY_A)
    theirs = service.post("/fhir", bundle_for(MRN_B, uuid.uuid4().hex[:12]), key=KEY_B)
    assert status(service, theirs.headers["Location"], KEY_A).status_code == 404
    assert status(service, mine.headers["Location"], KEY_A).status_code == 200
    assert status(service, theirs.headers["Location"], KEY_ADMIN).status_code == 200
    listed = httpx.get(f"{service.url}/status?limit=1000", headers={"Authorization": f"Bearer {KEY_A}"})
    assert {i["source"] for i in listed.json()["items"]} == {"hospital-a"}
    everything = httpx.get(
        f"{service.url}/status?limit=1000", headers={"Authorization": f"Bearer {KEY_ADMIN}"}
    )
    assert {"hospital-a", "hospital-b"} <= {i["source"] for i in everything.json()["items"]}
    for bad in ("-1", "0", "1001", "abc"):
        reply = httpx.get(f"{service.url}/status?limit={bad}", headers={"Authorization": f"Bearer {KEY_A}"})
        assert reply.status_code == 400 and reply.json()["resourceType"] == "OperationOutcome"
    assert service.post("/fhir", bundle_for(MRN_A, "x"), key=KEY_ADMIN).status_code == 403  # admins read


def test_active_or_invalid_narrative_is_refused_without_echoing_it(service):
    before = sum(service.inbox().values())
    for div, fragment in [
        ('<div xmlns="http://www.w3.org/1999/xhtml"><script>steal("s3cr3t")</script>ok</div>', "script"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="s3cr3t()"/>ok</div>', "onerror"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:s3cr3t()">x</a></div>', "script URL"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>s3cr3t</div>', "not well-formed"),
    ]:
        bundle = bundle_for(MRN_A, uuid.uuid4().hex[:12])
        bundle["entry"][0]["resource"]["text"] = {"status": "generated", "div": div}
        reply = service.post("/fhir", bundle, key=KEY_A)
        assert reply.status_code == 422, reply.text
        assert fragment in reply.text and "s3cr3t" not in reply.text
    assert sum(service.inbox().values()) == before
    fine = bundle_for(MRN_A, uuid.uuid4().hex[:12])
    fine["entry"][0]["resource"]["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>A <b>patient</b></p></div>',
    }
    assert service.post("/fhir", fine, key=KEY_A).status_code == 202


def test_data_about_a_patient_not_yet_on_the_server_waits_for_it(service, hapi_url):
    mrn = uuid.uuid4().hex[:12]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "early"},
        "subject": {"reference": f"Patient?identifier={MRN_A}|{mrn}"},
    }
    early = service.post("/fhir/Observation", observation, key=KEY_A)
    assert early.status_code == 202
    first = status(service, early.headers["Location"], KEY_A).json()
    assert first["state"] in ("accepted", "processing")
    late = service.post("/fhir", bundle_for(MRN_A, mrn), key=KEY_A)
    assert wait(service, late.headers["Location"], KEY_A)["state"] == "done"
    assert wait(service, early.headers["Location"], KEY_A)["state"] == "done"
    [patient] = on_server(hapi_url, "Patient", {"identifier": f"{MRN_A}|{mrn}"})
    found = on_server(hapi_url, "Observation", {"subject": f"Patient/{patient['id']}", "code:text": "early"})
    assert len(found) == 1
