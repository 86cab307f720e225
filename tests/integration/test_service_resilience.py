"""The ingestion service under load and outages, against HAPI (through the fault proxy where a fault is
needed): a responsive /healthz, no resend of a transaction still running, bounded transactions, and a
FHIR-server outage that makes no dead letters (issue 13)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.fault_proxy import Delay, FaultProxy, Respond
from tests.support.patients import candidate_on_server
from tests.support.server import engine_bundle
from tests.support.service import MRN, Service


def patients(hapi_url: str, mrn: str) -> list[dict]:
    async def go() -> list[dict]:
        async with FhirClient(hapi_url) as client:
            return await client.search_resources("Patient", {"identifier": f"{MRN}|{mrn}"})

    return asyncio.run(go())


def observations(hapi_url: str, patient_id: str) -> list[dict]:
    async def go() -> list[dict]:
        async with FhirClient(hapi_url) as client:
            return await client.search_resources("Observation", {"subject": f"Patient/{patient_id}"})

    return asyncio.run(go())


@pytest.fixture(scope="module")
def behind_proxy(hapi_url, tmp_path_factory) -> Iterator[tuple[Service, FaultProxy]]:
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    with FaultProxy(hapi_url) as proxy:
        running = Service(
            proxy.url,
            tmp_path_factory.mktemp("resilience") / "inbox.sqlite",
            "--timeout",
            "2",
            "--max-attempts",
            "2",
            "--retry-backoff",
            "0.2",
            "--max-transaction-entries",
            "4",
            "--reference-wait",
            "3",
        )
        try:
            yield running, proxy
        finally:
            running.process.kill()  # it may be holding a hung request
            running.process.wait(timeout=30)


@pytest.fixture
def service(behind_proxy) -> Iterator[tuple[Service, FaultProxy]]:
    running, proxy = behind_proxy
    proxy.clear()
    yield running, proxy
    proxy.clear()


def test_a_transaction_still_running_at_the_timeout_is_never_sent_again(service, hapi_url):
    running, proxy = service
    mrn = uuid.uuid4().hex[:12]
    bundle = engine_bundle(mrn, date.today())
    bundle["type"] = "transaction"  # one transaction, not split
    for entry in bundle["entry"]:
        entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    # The server gets the transaction only after the client's (sized) timeout: it is still running then.
    proxy.add(Delay(4.0), method="POST", path="", body=mrn, times=1)
    reply = running.post("/fhir", bundle)
    assert reply.status_code == 202
    done = running.wait_done(reply.headers["Location"], timeout=90)
    assert done["state"] == "done", done
    assert proxy.count(method="POST", path="", body=mrn, forwarded=True) == 1, proxy.summary()
    [patient] = patients(hapi_url, mrn)
    assert patient["meta"]["versionId"] == "1"


def test_a_large_collection_is_forwarded_in_bounded_transactions(service, hapi_url):
    running, proxy = service
    mrn = uuid.uuid4().hex[:12]
    bundle = engine_bundle(mrn, date.today())
    sent = len(bundle["entry"])
    assert sent > 8
    done = running.wait_done(running.post("/fhir", bundle).headers["Location"], timeout=90)
    assert done["state"] == "done" and done["result"]["forwarded"] == sent, done
    transactions = [r for r in proxy.requests if r.method == "POST" and r.path == "" and mrn in r.text]
    assert len(transactions) == 1  # the Patient's transaction; the rest refer to it by its server id
    assert proxy.count(method="POST", path="", forwarded=True) >= -(-sent // 4)
    [patient] = patients(hapi_url, mrn)
    assert len(observations(hapi_url, patient["id"])) == sum(
        1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )


def test_a_fhir_server_outage_with_a_queue_makes_no_dead_letters(service, hapi_url):
    running, proxy = service
    down = proxy.add(Respond(503), times=None)  # every request: the server is restarting
    mrns = [uuid.uuid4().hex[:12] for _ in range(3)]
    locations = [running.post("/fhir", engine_bundle(mrn, date.today())).headers["Location"] for mrn in mrns]
    # Much longer than 2 attempts with a 0.2 s backoff would last without the circuit breaker.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert all(running.status(loc)["state"] in ("accepted", "processing") for loc in locations)
        time.sleep(1)
    assert httpx.get(f"{running.url}/healthz").json()["fhirServer"] == "unavailable"
    assert down.applied > 0
    proxy.clear()  # the server is back
    for location in locations:
        assert running.wait_done(location, timeout=120)["state"] == "done"
    for mrn in mrns:
        assert len(patients(hapi_url, mrn)) == 1
    assert running.inbox().get("dead", 0) == 0


def test_data_waiting_for_a_patient_that_never_comes_is_dead_lettered_after_the_wait(service):
    running, _ = service
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "orphan"},
        "subject": {"reference": f"Patient?identifier={MRN}|never-{uuid.uuid4().hex[:8]}"},
    }
    reply = running.post("/fhir/Observation", observation)
    assert reply.status_code == 202
    assert running.status(reply.headers["Location"])["state"] in ("accepted", "processing")
    dead = running.wait_done(reply.headers["Location"], timeout=60)
    assert dead["state"] == "dead" and "waiting for a referenced Patient" in dead["error"], dead


def big_bundle(observations: int) -> dict:
    resources = candidate_on_server("big-1", date(2026, 11, 23))
    extra = next(r for r in resources if r["resourceType"] == "Observation")
    for index in range(observations):
        resources.append(extra | {"id": f"extra-{index}"})
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def test_healthz_stays_fast_while_large_screen_calls_run(hapi_url, tmp_path):
    import json

    body = json.dumps(big_bundle(9_900)).encode()
    running = Service(hapi_url, tmp_path / "inbox.sqlite", "--max-body-bytes", "30000000")
    replies: list[int] = []
    latencies: list[float] = []

    def screen() -> None:
        replies.append(running.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", body).status_code)

    try:
        threads = [threading.Thread(target=screen) for _ in range(4)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            started = time.monotonic()
            assert httpx.get(f"{running.url}/healthz", timeout=30).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
        for thread in threads:
            thread.join()
    finally:
        assert running.stop() == 0
    assert replies == [200] * 4
    assert len(latencies) > 5  # the screens took a while: /healthz was asked throughout
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    stderr = running.process.stderr.read() if running.process.stderr else ""
    assert "\x1b[" not in stderr  # no ANSI colour codes in the JSON logs


def test_cpu_worker_processes_never_outlive_a_killed_service(hapi_url, tmp_path):
    import signal
    import subprocess

    running = Service(hapi_url, tmp_path / "inbox.sqlite")
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in candidate_on_server("k-1", date(2026, 11, 23))],
    }
    assert running.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", bundle).status_code == 200
    listed = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(running.process.pid)], capture_output=True, text=True
    )
    children = [int(p) for p in listed.stdout.split()]
    assert children  # the pool's processes (and the resource tracker)
    running.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in children if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)]
    assert not alive, alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
