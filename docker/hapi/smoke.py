"""End-to-end smoke check of the lean HAPI server: python docker/hapi/smoke.py [BASE_URL]

Without BASE_URL it builds the jar and starts a server via tests.support.hapi (run from the
repo root). Each check prints one line and asserts; a starting point for integration tests.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def crud_and_search(c: httpx.Client) -> None:
    r = c.put(
        "Patient/smoke-pat-1",
        json={
            "resourceType": "Patient",
            "id": "smoke-pat-1",
            "identifier": [{"system": "urn:trial:subject", "value": "SMOKE-1"}],
            "birthDate": "2019-05-01",
        },
    )
    assert r.status_code in (200, 201), r.text
    r = c.post(
        "Observation",
        headers={"Prefer": "return=representation"},
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/smoke-pat-1"},
            "valueQuantity": {"value": 12.5, "unit": "kg"},
        },
    )
    assert r.status_code == 201 and r.json()["id"], r.text
    assert c.get("Patient/smoke-pat-1").status_code == 200
    b = c.get(
        "Observation",
        params={
            "subject": "Patient/smoke-pat-1",
            "_include": "Observation:subject",
            "_lastUpdated": "gt2000-01-01",
        },
    ).json()
    assert {e["resource"]["resourceType"] for e in b["entry"]} == {"Observation", "Patient"}
    b = c.get(
        "Patient", params={"identifier": "urn:trial:subject|SMOKE-1", "_revinclude": "Observation:subject"}
    ).json()
    assert [e["search"]["mode"] for e in b["entry"]].count("include") >= 1
    # conditional update: existing -> 200 same id, new -> 201
    r = c.put(
        "Patient",
        params={"identifier": "urn:trial:subject|SMOKE-1"},
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:trial:subject", "value": "SMOKE-1"}],
            "birthDate": "2019-05-02",
        },
    )
    assert r.status_code == 200 and "/Patient/smoke-pat-1/" in r.headers["content-location"], r.text
    # conditional create: existing -> 200, nothing created
    r = c.post(
        "Patient",
        headers={"If-None-Exist": "identifier=urn:trial:subject|SMOKE-1"},
        json={"resourceType": "Patient", "identifier": [{"system": "urn:trial:subject", "value": "SMOKE-1"}]},
    )
    assert r.status_code == 200, r.text
    assert c.get("Patient/smoke-pat-1/_history").json()["total"] >= 2
    print("ok  CRUD, search, _include/_revinclude, _lastUpdated, conditional create/update, history")


def transaction_and_paging(c: httpx.Client) -> None:
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b5e2c3a-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:trial:subject", "value": "SMOKE-TX"}],
                    "generalPractitioner": [{"reference": "http://other.example.org/fhir/Practitioner/1"}],
                },
                "request": {"method": "PUT", "url": "Patient?identifier=urn:trial:subject|SMOKE-TX"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "identifier": [{"system": "urn:smoke", "value": "obs-1"}],
                    "subject": {"reference": "urn:uuid:0b5e2c3a-0000-4000-8000-000000000001"},
                    "performer": [{"reference": "Practitioner/not-on-this-server"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": "identifier=urn:smoke|obs-1",
                },
            },
        ],
    }
    r = c.post("", json=tx)
    assert r.status_code == 200, r.text
    for _ in range(3):
        entries = [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "smoke-bulk"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
            for _ in range(400)
        ]
        assert (
            c.post("", json={"resourceType": "Bundle", "type": "batch", "entry": entries}).status_code == 200
        )
    b = c.get("Observation", params={"code:text": "smoke-bulk", "_count": 1000}).json()
    nxt = next(link["url"] for link in b["link"] if link["relation"] == "next")
    assert len(b["entry"]) == 1000 and len(c.get(nxt).json()["entry"]) >= 200
    print("ok  transaction (conditional, urn:uuid, external + dangling refs), batch, _count=1000 + next link")


def subscription(c: httpx.Client) -> None:
    received: list[tuple[str, str, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _handle

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        sub = c.post(
            "Subscription",
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "smoke",
                "criteria": "Observation?code=http://loinc.org|8302-2",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": f"http://127.0.0.1:{srv.server_port}/hook",
                    "payload": "application/fhir+json",
                },
            },
        ).json()
        deadline = time.time() + 30
        while c.get(f"Subscription/{sub['id']}").json()["status"] != "active":
            assert time.time() < deadline, "subscription never became active"
            time.sleep(0.2)
        obs = c.post(
            "Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            },
        ).json()
        t0 = time.time()
        while not received:
            assert time.time() - t0 < 30, "no rest-hook delivery within 30 s"
            time.sleep(0.1)
        method, path, _body = received[0]
        assert path == f"/hook/Observation/{obs['id']}", received
        print(f"ok  rest-hook subscription delivered {method} {path} after {time.time() - t0:.1f}s")
    finally:
        srv.shutdown()


def bulk_export(c: httpx.Client) -> None:
    t0 = time.time()
    r = c.get(
        "$export",
        params={"_type": "Patient,Observation"},
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert r.status_code == 202, r.text
    poll = r.headers["content-location"]
    while (p := c.get(poll)).status_code == 202:
        assert time.time() - t0 < 120, "export did not finish in 120 s"
        time.sleep(0.5)
    assert p.status_code == 200, p.text
    outputs = p.json()["output"]
    # Binary outputs come back as raw NDJSON only when asked for it (else as a Binary resource)
    ndjson = {"Accept": "application/fhir+ndjson"}
    lines = sum(len(c.get(o["url"], headers=ndjson).text.splitlines()) for o in outputs)
    print(f"ok  $export finished in {time.time() - t0:.1f}s: {len(outputs)} NDJSON files, {lines} resources")


def validate(c: httpx.Client) -> None:
    url = "http://example.org/fhir/StructureDefinition/smoke-patient"
    sd = {
        "resourceType": "StructureDefinition",
        "url": url,
        "name": "SmokePatient",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {
            "element": [  # differential elements in base-definition order
                {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1},
                {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
            ]
        },
    }
    assert c.post("StructureDefinition", json=sd).status_code == 201

    def errors(resource: dict, **params: str) -> list[str]:
        oo = c.post("Patient/$validate", params=params, json=resource).json()
        return [i.get("diagnostics", "") for i in oo["issue"] if i["severity"] in ("error", "fatal")]

    bad = {"resourceType": "Patient", "name": [{"family": "NoIdentifier"}]}
    good = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:x", "value": "1"}],
        "birthDate": "2020-01-01",
    }
    assert len(errors(bad, profile=url)) == 2, errors(bad, profile=url)
    assert errors(good, profile=url) == []
    assert errors({**bad, "meta": {"profile": [url]}})
    print("ok  $validate against an uploaded StructureDefinition (?profile= and meta.profile)")


def run(base_url: str) -> None:
    with httpx.Client(base_url=base_url + "/", headers=FHIR_JSON, timeout=120) as c:
        assert c.get("metadata").json()["fhirVersion"] == "4.0.1"
        crud_and_search(c)
        transaction_and_paging(c)
        subscription(c)
        bulk_export(c)
        validate(c)


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1].rstrip("/"))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.hapi import REPO_ROOT, build_jar, start_hapi

    with start_hapi(build_jar(REPO_ROOT)) as server:
        print(f"server {server.base_url} up in {server.startup_seconds:.1f}s")
        run(server.base_url)


if __name__ == "__main__":
    main()
