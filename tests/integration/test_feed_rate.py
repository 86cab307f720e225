"""Processing at feed rate against HAPI: concurrent, batched and coalesced, and still exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import date

import httpx

from adapter.cli import main
from adapter.fault_points import CRASH_EXIT_CODE
from adapter.fhir.client import FhirClient
from tests.support.server import engine_bundle, server_subjects
from tests.support.service import MRN, PUSH_KEY, Service, free_port


def _lab_update(mrn: str, n: int) -> dict:
    """A later lab result for a patient already on the server, referred to by MRN."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"plt-{n}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
                    "subject": {"reference": f"Patient?identifier={MRN}|{mrn}"},
                    "effectiveDateTime": date.today().isoformat(),
                    "valueQuantity": {"value": 150 + n, "unit": "10*3/uL"},
                }
            }
        ],
    }


def _outsider(mrn: str) -> dict:
    """A patient with no leukaemia record: forwarded, never screened."""
    patient = {"resourceType": "Patient", "id": "1", "identifier": [{"system": MRN, "value": mrn}]}
    patient["birthDate"] = "2015-01-01"
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}


def _accept_backlog(hapi_url: str, inbox, bodies: list[dict]) -> list[str]:
    """Accepted with processing off, so that processing later finds a backlog (batches form)."""
    accepting = Service(hapi_url, inbox, "--no-processing")
    try:
        locations = []
        for body in bodies:
            reply = accepting.post("/fhir", body)
            assert reply.status_code == 202, reply.text
            locations.append(reply.headers["Location"])
        return locations
    finally:
        assert accepting.stop() == 0


def _observations(hapi_url: str, patient_id: str) -> list[dict]:
    async def go() -> list[dict]:
        async with FhirClient(hapi_url) as client:
            return await client.search_resources(
                "Observation", {"subject": f"Patient/{patient_id}", "code": "http://loinc.org|777-3"}
            )

    return asyncio.run(go())


def test_a_backlog_for_many_patients_is_processed_concurrently_and_exactly_once(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    mrns = [uuid.uuid4().hex[:12] for _ in range(12)]
    outsider = uuid.uuid4().hex[:12]
    bodies = [engine_bundle(m, date.today()) for m in mrns]
    bodies += [_lab_update(mrns[0], n) for n in range(4)]  # one patient, many payloads in a burst
    bodies.append(_outsider(outsider))
    locations = _accept_backlog(hapi_url, inbox, bodies)

    running = Service(hapi_url, inbox, "--process-concurrency", "4")
    try:
        results = [running.wait_done(location, timeout=240) for location in locations]
        stats = httpx.get(f"{running.url}/healthz", timeout=10).json()["processing"]
    finally:
        assert running.stop() == 0
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in results), [
        (r["state"], r["error"]) for r in results
    ]
    for mrn in mrns:
        patients, subjects = server_subjects(hapi_url, mrn)
        assert len(patients) == 1 and len(subjects) == 1 and subjects[0]["status"] == "candidate", mrn
        assert patients[0]["meta"]["versionId"] == "1"
    # The four lab updates, each landing once, in order: the last one sent is the value on the server.
    first, _ = server_subjects(hapi_url, mrns[0])
    labs = {o["valueQuantity"]["value"] for o in _observations(hapi_url, first[0]["id"])}
    assert {150, 151, 152, 153} <= labs
    assert all(r["result"]["patients"][0]["status"] == "candidate" for r in results[12:16])
    # The outsider is on the server but was not screened, and has no flag.
    patients, subjects = server_subjects(hapi_url, outsider)
    assert len(patients) == 1 and subjects == []
    assert results[-1]["result"]["patients"] == []
    assert results[-1]["result"]["notScreened"] == [f"Patient/{patients[0]['id']}"]
    # Batched and coalesced: fewer transactions than payloads, fewer screenings than requests.
    assert stats["payloadsForwardedTogether"] >= 2, stats
    assert stats["patientsInRounds"] <= stats["patientsRequested"], stats


def test_a_crash_after_a_batched_transaction_then_restart_processes_each_payload_once(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    mrns = [uuid.uuid4().hex[:12] for _ in range(4)]
    locations = _accept_backlog(hapi_url, inbox, [engine_bundle(m, date.today()) for m in mrns])

    # Started bare: with a backlog waiting it may crash before it would answer /healthz.
    command = [sys.executable, "-m", "adapter", "serve", "--fhir-url", hapi_url, "--inbox", str(inbox)]
    crashing = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{free_port()}"],
        env={
            **os.environ,
            "SERVICE_API_KEYS": f"{PUSH_KEY}:push",
            "TRIAL_ADAPTER_CRASH_AT": "service-after-batch",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert crashing.wait(timeout=120) == CRASH_EXIT_CODE  # the batch committed, nothing recorded
    finally:
        if crashing.poll() is None:  # no batch formed: never leave the service running
            crashing.kill()

    restarted = Service(hapi_url, inbox)
    try:
        done = [restarted.wait_done(location, timeout=120) for location in locations]
        status = httpx.get(
            f"{restarted.url}/status?limit=100", headers={"Authorization": f"Bearer {PUSH_KEY}"}
        ).json()
    finally:
        assert restarted.stop() == 0
    assert all(d["state"] == "done" and d["attempts"] == 2 for d in done), done
    assert sum(1 for i in status["items"] if i["state"] == "done") == len(mrns)
    for mrn in mrns:
        patients, subjects = server_subjects(hapi_url, mrn)
        assert len(patients) == 1 and len(subjects) == 1, mrn
        assert patients[0]["meta"]["versionId"] == "1"  # the committed batch was not sent again
