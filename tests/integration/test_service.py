"""The ingestion service against HAPI: pushes land on the server and get screened and flagged, once."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.patients import candidate_on_server
from tests.support.server import engine_bundle, server_subjects
from tests.support.service import ADMIN_KEY, MRN, PUSH_KEY, Service


@pytest.fixture(scope="module")
def service(hapi_url, tmp_path_factory) -> Iterator[Service]:
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    running = Service(hapi_url, tmp_path_factory.mktemp("svc") / "inbox.sqlite")
    yield running
    assert running.stop() == 0


def test_pushed_bundle_is_forwarded_screened_and_flagged(service, hapi_url):
    mrn = uuid.uuid4().hex[:12]
    reply = service.post("/fhir", engine_bundle(mrn, date.today()))
    assert reply.status_code == 202
    assert reply.headers["Location"].startswith("/status/")
    assert reply.json()["resourceType"] == "OperationOutcome"
    done = service.wait_done(reply.headers["Location"])
    assert done["state"] == "done", done
    assert done["result"]["patients"][0]["status"] == "candidate"
    patients, subjects = server_subjects(hapi_url, mrn)
    assert len(patients) == 1 and len(subjects) == 1 and subjects[0]["status"] == "candidate"


def test_the_same_bundle_pushed_twice_is_processed_once(service, hapi_url):
    mrn = uuid.uuid4().hex[:12]
    bundle = engine_bundle(mrn, date.today(), bundle_id=uuid.uuid4().hex)
    first = service.post("/fhir", bundle)
    second = service.post("/fhir", bundle)
    assert first.status_code == 202 and second.status_code == 200
    assert first.headers["Location"] == second.headers["Location"]
    assert service.wait_done(first.headers["Location"])["attempts"] == 1
    header_key = uuid.uuid4().hex
    third = service.post("/fhir", engine_bundle(mrn, date.today()), **{"Idempotency-Key": header_key})
    fourth = service.post("/fhir", engine_bundle(mrn, date.today()), **{"Idempotency-Key": header_key})
    assert third.status_code == 202 and fourth.status_code == 200
    service.wait_done(third.headers["Location"])
    patients, subjects = server_subjects(hapi_url, mrn)
    assert len(patients) == 1 and len(subjects) == 1  # repeats never duplicate on the server


@pytest.mark.parametrize(
    ("body", "headers", "key", "status"),
    [
        (b'{"resourceType": "Bundle", ', {}, PUSH_KEY, 400),
        (b"\xff\xfe not utf-8", {}, PUSH_KEY, 400),
        ({"resourceType": "Patient", "id": "p"}, {}, PUSH_KEY, 422),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Foo"}}],
            },
            {},
            PUSH_KEY,
            422,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient", "birthDate": "not-a-date"}}],
            },
            {},
            PUSH_KEY,
            422,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"text": "x"},
                            "subject": {"reference": "urn:uuid:0000"},
                        }
                    }
                ],
            },
            {},
            PUSH_KEY,
            422,
        ),
        (b"x" * 2_500_000, {}, PUSH_KEY, 413),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient"}}],
            },
            {"Content-Type": "text/plain"},
            PUSH_KEY,
            415,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient"}}],
            },
            {},
            None,
            401,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient"}}],
            },
            {},
            "wrong-key-0123456789abc",
            401,
        ),
    ],
    ids=[
        "truncated-json",
        "non-utf8",
        "not-a-bundle",
        "unknown-type",
        "invalid-element",
        "dangling-reference",
        "oversized",
        "wrong-content-type",
        "no-token",
        "wrong-token",
    ],
)
def test_bad_input_gets_the_right_status_and_an_outcome_and_nothing_is_stored(
    service, body, headers, key, status
):
    before = httpx.get(f"{service.url}/healthz").json()["inbox"]
    reply = service.post("/fhir", body, key=key, **headers)
    assert reply.status_code == status
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
    assert httpx.get(f"{service.url}/healthz").json()["inbox"] == before


def test_metadata_is_a_valid_capability_statement_and_docs_are_served(service):
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    statement = httpx.get(f"{service.url}/fhir/metadata").json()
    CapabilityStatement.model_validate(statement)
    assert {"transaction", "batch"} <= {i["code"] for i in statement["rest"][0]["interaction"]}
    assert httpx.get(f"{service.url}/openapi.json").json()["info"]["title"].startswith("trial-adapter")


def test_screen_operation_matches_the_cli_and_writes_nothing(service, tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in candidate_on_server("scr-1", date(2026, 11, 23))],
    }
    path = tmp_path / "one.json"
    path.write_text(json.dumps(bundle))
    out = tmp_path / "cli.json"
    assert (
        main(["screen", "--source", str(path), "--as-of", "2026-11-23", "--output", str(out), "--quiet"]) == 0
    )
    reply = service.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", bundle, Accept="application/json")
    assert reply.status_code == 200
    assert reply.json() == json.loads(out.read_text())
    parameters = service.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", bundle).json()
    assert parameters["resourceType"] == "Parameters"
    assert sum(1 for p in parameters["parameter"] if p["name"] == "criterion") == 33


def test_rejected_payload_is_dead_lettered_visible_and_replayable_by_an_admin(service, hapi_url):
    # Two patients share an MRN on the server: a conditional update on that MRN is refused (412).
    mrn = uuid.uuid4().hex[:12]

    async def duplicate(client: FhirClient) -> None:
        for _ in range(2):
            await client.request(
                "POST",
                "Patient",
                json_body={"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}]},
            )

    asyncio.run(_with_client(hapi_url, duplicate))
    reply = service.post("/fhir", engine_bundle(mrn, date.today()))
    assert reply.status_code == 202
    dead = service.wait_done(reply.headers["Location"])
    assert dead["state"] == "dead" and "HTTP 412" in dead["error"], dead
    item = reply.headers["Location"].removeprefix("/status/")
    listed = httpx.get(
        f"{service.url}/status?state=dead", headers={"Authorization": f"Bearer {PUSH_KEY}"}
    ).json()["items"]
    assert item in {i["id"] for i in listed}
    assert service.post(f"/status/{item}/$replay", {}, key=PUSH_KEY).status_code == 403
    assert service.post(f"/status/{item}/$replay", {}, key=ADMIN_KEY).status_code == 202
    assert (
        service.wait_done(reply.headers["Location"])["state"] == "dead"
    )  # still refused: back in the dead letters


async def _with_client(hapi_url: str, work) -> None:
    async with FhirClient(hapi_url) as client:
        await work(client)


def test_killed_between_accept_and_processing_finishes_after_restart(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    mrn = uuid.uuid4().hex[:12]
    accepting = Service(hapi_url, inbox, "--no-processing")
    reply = accepting.post("/fhir", engine_bundle(mrn, date.today()))
    assert reply.status_code == 202
    accepting.stop(signal.SIGKILL)
    assert server_subjects(hapi_url, mrn) == ([], [])  # accepted, not yet processed

    restarted = Service(hapi_url, inbox)
    try:
        assert restarted.wait_done(reply.headers["Location"])["state"] == "done"
        patients, subjects = server_subjects(hapi_url, mrn)
        assert len(patients) == 1 and len(subjects) == 1
    finally:
        assert restarted.stop() == 0
