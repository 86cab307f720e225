"""The test server itself: our client does create, read, search, transaction and conditional update."""

from __future__ import annotations

import uuid

import pytest

from adapter.fhir.client import FhirClient, FhirNotFound


@pytest.fixture
async def client(hapi_url):
    async with FhirClient(hapi_url) as c:
        yield c


async def test_metadata_is_an_r4_capability_statement(client):
    statement = await client.get_json("metadata")
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"].startswith("4.0")


async def test_create_read_and_search(client):
    family = f"Test{uuid.uuid4().hex[:8]}"
    created = (
        await client.request(
            "POST", "Patient", json_body={"resourceType": "Patient", "name": [{"family": family}]}
        )
    ).json()
    read = await client.get_json(f"Patient/{created['id']}")
    assert read["name"][0]["family"] == family
    found = await client.search_resources("Patient", {"family": family})
    assert [p["id"] for p in found] == [created["id"]]


async def test_fhirpy_resource_api_works_over_our_transport(client):
    family = f"Fhirpy{uuid.uuid4().hex[:8]}"
    patient = client.resource("Patient", name=[{"family": family}])
    await patient.save()
    fetched = await client.resources("Patient").search(family=family).fetch()
    assert [p.id for p in fetched] == [patient.id]
    with pytest.raises(FhirNotFound):
        await client.get_json("Patient/does-not-exist-anywhere")


async def test_transaction_bundle_resolves_internal_references(client):
    marker = uuid.uuid4().hex[:8]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:test", "value": marker}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "test"},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    reply = await client.transaction(bundle)
    statuses = [e["response"]["status"] for e in reply["entry"]]
    assert all(s.startswith("201") for s in statuses)
    patient_id = reply["entry"][0]["response"]["location"].split("/")[1]
    observations = await client.search_resources("Observation", {"subject": f"Patient/{patient_id}"})
    assert len(observations) == 1


async def test_conditional_update_creates_once_then_updates_in_place(client):
    value = uuid.uuid4().hex
    url = f"Patient?identifier=urn:test|{value}"
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": value}], "active": True}
    first = await client.request("PUT", url, json_body=body)
    second = await client.request("PUT", url, json_body={**body, "active": False})
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["meta"]["versionId"] == "2"
