"""A malformed record from a FHIR server stops nothing: ``screen --fhir-url``, the worker and the service.

HAPI refuses to store a Condition whose ``clinicalStatus`` is a bare string, but Epic, Cerner and
others are less strict. So the data is stored well formed, and the fault proxy hands the adapter HAPI's
answers with the marked patient's Conditions made malformed on the way (``Rewrite``). The marked patient
is an ``error`` with a reason; everyone else's result is what HAPI's own data gives; the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.flagging import SUBJECT_SYSTEM
from adapter.worker.loop import Worker, WorkerConfig
from adapter.worker.state import WorkerState
from mappings.criteria import load_criteria
from mappings.study import study_dir
from tests.support.fault_proxy import FaultProxy, Rewrite
from tests.support.patients import candidate_on_server, low_platelets, put_transaction
from tests.support.service import ServiceProcess

MARK = "urn:test:malformed-on-the-way"
NCT = "NCT06849401"
PUSH_KEY = "push-key-malformed-0123456789"
MRN = "urn:oid:1.2.36.146.595.217.0.1"


def malform(body: bytes) -> bytes:
    """Every marked Condition in an answer gets a bare-string clinicalStatus (a CodeableConcept in FHIR)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    changed, stack = False, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            marked = any(
                isinstance(i, dict) and i.get("system") == MARK for i in item.get("identifier") or ()
            )
            if item.get("resourceType") == "Condition" and marked:
                item["clinicalStatus"] = "active"
                changed = True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return json.dumps(data).encode() if changed else body


def marked(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for resource in resources:
        if resource["resourceType"] == "Condition":
            resource["identifier"] = [{"system": MARK, "value": resource["id"]}]
    return resources


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def on_server(hapi_url: str, work: Any) -> Any:
    async def go() -> Any:
        async with FhirClient(hapi_url) as client:
            return await work(client)

    return asyncio.run(go())


def load(hapi_url: str, resources: list[dict[str, Any]]) -> None:
    on_server(hapi_url, lambda c: c.transaction(put_transaction(resources), idempotent=True))


def subjects(hapi_url: str, patient_id: str) -> list[dict[str, Any]]:
    return on_server(
        hapi_url,
        lambda c: c.search_resources(
            "ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{NCT}/{patient_id}"}
        ),
    )


@pytest.fixture
def proxy(hapi_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(hapi_url) as running:
        running.add(Rewrite(malform), times=None)
        yield running


def test_screen_from_a_server_lists_the_error_and_screens_everyone_else(hapi_url, proxy, tmp_path):
    good, bad = new_id("mf-good"), new_id("mf-bad")
    load(hapi_url, candidate_on_server(good, date.today()) + marked(candidate_on_server(bad, date.today())))
    today = date.today().isoformat()

    def screen(url: str, out: Path) -> tuple[int, dict[str, dict[str, Any]]]:
        code = main(["screen", "--fhir-url", url, "--as-of", today, "--output", str(out), "--quiet"])
        return code, {p["patient"]: p for p in json.loads(out.read_text())["patients"]}

    direct_code, direct = screen(hapi_url, tmp_path / "direct.json")
    code, through = screen(proxy.url, tmp_path / "through.json")
    assert direct_code == 0 and direct[f"Patient/{bad}"]["status"] == "candidate"
    assert code == 3
    error = through.pop(f"Patient/{bad}")
    assert error["status"] == "error" and error["criteria"] == []
    assert error["reason"].startswith(f"Condition/{bad}-") and "Condition.clinicalStatus" in error["reason"]
    direct.pop(f"Patient/{bad}")
    assert through == direct  # everyone else exactly as HAPI's own data gives
    assert through[f"Patient/{good}"]["status"] == "candidate"
    assert json.loads((tmp_path / "through.json").read_text())["summary"]["errors"] == 1


def test_the_worker_logs_the_error_goes_on_and_screens_it_again_only_when_it_changes(
    hapi_url, proxy, tmp_path
):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    good, bad = new_id("mfw-good"), new_id("mfw-bad")
    load(hapi_url, candidate_on_server(good, date.today()) + marked(candidate_on_server(bad, date.today())))
    time.sleep(1.1)  # the checkpoint is kept to the second: the load is before the first pass
    definition = load_criteria(study_dir(NCT) / "criteria.yaml")

    async def passes() -> list[int]:
        errors = []
        async with FhirClient(proxy.url) as client:
            worker = Worker(
                client, definition, WorkerState(tmp_path / "state.sqlite"), WorkerConfig(overlap=0)
            )
            await worker.run_pass()  # full pass: the whole population, the bad record among them
            errors.append(worker.status.errors)
            await asyncio.sleep(1.1)
            await worker.run_pass()  # nothing changed: the bad record is not tried again
            errors.append(worker.status.errors)
            await asyncio.to_thread(load, hapi_url, [low_platelets(bad, date.today())])
            await asyncio.sleep(1.1)
            await worker.run_pass()  # its data changed: screened again (still malformed on the way)
            errors.append(worker.status.errors)
            assert worker.status.passes == 3 and worker.status.last_error is None
        return errors

    first, unchanged, changed = asyncio.run(passes())
    # Other tests' marked patients may be on the server too: counted by the difference.
    assert first >= 1 and unchanged == first and changed == first + 1
    assert [s["status"] for s in subjects(hapi_url, good)] == ["candidate"]
    assert subjects(hapi_url, bad) == []  # an error is never flagged


def engine_bundle(mrn: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A collection Bundle as an engine sends it: an MRN on the Patient, Type/id references."""
    resources[0]["identifier"] = [{"system": MRN, "value": mrn}]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def test_the_service_screens_pushed_data_to_an_error_and_finishes_the_payload(hapi_url, proxy, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    service = ServiceProcess(
        proxy.url, tmp_path / "inbox.sqlite", keys=f"{PUSH_KEY}:push", default_key=PUSH_KEY
    )
    try:
        good_mrn, bad_mrn = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
        bad_reply = service.post(
            "/fhir", engine_bundle(bad_mrn, marked(candidate_on_server("900", date.today())))
        )
        good_reply = service.post("/fhir", engine_bundle(good_mrn, candidate_on_server("901", date.today())))
        assert bad_reply.status_code == good_reply.status_code == 202
        bad_done = service.wait_done(bad_reply.headers["Location"])
        good_done = service.wait_done(good_reply.headers["Location"])
    finally:
        assert service.stop() == 0
    assert bad_done["state"] == "done" and bad_done["attempts"] == 1, bad_done  # not retried, not dead
    [outcome] = bad_done["result"]["patients"]
    assert outcome["status"] == "error" and "Condition.clinicalStatus" in outcome["reason"]
    assert bad_done["result"]["flags"] == {}
    assert good_done["state"] == "done" and good_done["result"]["patients"][0]["status"] == "candidate"

    async def flagged(client: FhirClient, mrn: str) -> list[dict[str, Any]]:
        [patient] = await client.search_resources("Patient", {"identifier": f"{MRN}|{mrn}"})
        return await client.search_resources(
            "ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{NCT}/{patient['id']}"}
        )

    assert on_server(hapi_url, lambda c: flagged(c, bad_mrn)) == []
    assert [s["status"] for s in on_server(hapi_url, lambda c: flagged(c, good_mrn))] == ["candidate"]
