"""A second study is only data: the CD19 B-ALL test fixture (NCT00000000, not a registry record) is
published, screened and flagged on HAPI side by side with NCT06849401 by one worker and one service,
with no code written for it. Each candidate gets a ResearchSubject + Task for the study they fit only."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from fastapi.testclient import TestClient

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.fhir.transaction import transaction_bundle
from adapter.flagging import NCT_SYSTEM, SUBJECT_SYSTEM, TASK_SYSTEM
from adapter.publish import plan, transaction_for
from adapter.service.app import ServiceSettings, create_app
from adapter.service.sources import Sources
from adapter.worker.loop import Worker, WorkerConfig
from adapter.worker.state import WorkerState
from mappings.criteria import CriteriaDefinition, load_criteria
from mappings.resources import build_study_resources
from mappings.study import load_study, study_dir
from tests.support.b_all import STUDY, STUDY_DIR, b_all_candidate_on_server
from tests.support.patients import candidate_on_server, put_transaction

NCT = "NCT06849401"
KEY = "push-key-second-study-0123456789"
MRN = "urn:oid:1.2.36.146.595.217.0.1"


def run(work: Callable[[FhirClient], Awaitable[Any]], hapi_url: str) -> Any:
    async def go() -> Any:
        async with FhirClient(hapi_url) as client:
            return await work(client)

    return asyncio.run(go())


def definitions() -> list[CriteriaDefinition]:
    return [load_criteria(study_dir(NCT) / "criteria.yaml"), load_criteria(STUDY_DIR / "criteria.yaml")]


async def publish_second(client: FhirClient) -> None:
    """The fixture's folder by path, published exactly as ``publish`` publishes a study."""
    built = build_study_resources(
        load_study(STUDY_DIR / "study.json"), load_criteria(STUDY_DIR / "criteria.yaml")
    )
    tx = transaction_for(await plan(client, transaction_bundle(built.published())))
    if tx is not None:
        await client.transaction(tx, idempotent=True)


async def flags(client: FhirClient, study: str, patient_id: str) -> tuple[list[dict], list[dict]]:
    subjects = await client.search_resources(
        "ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{study}/{patient_id}"}
    )
    tasks = await client.search_resources(
        "Task", {"identifier": f"{TASK_SYSTEM}|{study}/{patient_id}/review"}
    )
    return subjects, tasks


async def published(client: FhirClient, study: str) -> tuple[list[dict], list[dict]]:
    studies = await client.search_resources("ResearchStudy", {"identifier": f"{NCT_SYSTEM}|{study}"})
    groups = [await client.get_json(s["enrollment"][0]["reference"]) for s in studies if s.get("enrollment")]
    return studies, groups


def publish_both(hapi_url: str) -> None:
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    run(publish_second, hapi_url)


def test_one_worker_flags_each_candidate_for_the_study_they_fit(hapi_url, tmp_path):
    publish_both(hapi_url)
    t_all, b_all = (f"two-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("t", "b"))
    today = date.today()
    resources = candidate_on_server(t_all, today) + b_all_candidate_on_server(b_all, today)
    run(lambda c: c.transaction(put_transaction(resources), idempotent=True), hapi_url)

    async def once(client: FhirClient) -> dict[str, Any]:
        state = WorkerState(tmp_path / "state.sqlite")
        try:
            worker = Worker(client, definitions(), state, WorkerConfig(once=True))
            assert await worker.run() == 0
            return {
                "counts": state.counts_by_study(),
                "history": {(r.study, r.patient): r.current.status for r in state.history()},
                "flags": {
                    (study, pid): await flags(client, study, pid)
                    for study in (NCT, STUDY)
                    for pid in (t_all, b_all)
                },
                "published": {study: await published(client, study) for study in (NCT, STUDY)},
            }
        finally:
            state.close()

    seen = run(once, hapi_url)
    assert_flagged_for_their_study(seen["flags"], t_all, b_all)
    history = seen["history"]  # each patient kept per study in the worker's state
    assert (
        history[(NCT, f"Patient/{t_all}")] == "candidate"
        and history[(STUDY, f"Patient/{b_all}")] == "candidate"
    )
    assert history[(STUDY, f"Patient/{t_all}")] == history[(NCT, f"Patient/{b_all}")] == "not-eligible"
    for study in (NCT, STUDY):  # both studies' ResearchStudy and eligibility Group are on the server
        [_study], [group] = seen["published"][study]
        assert group["resourceType"] == "Group" and group["characteristic"]

    # The what-changed report names the study of each new candidate.
    report_file = tmp_path / "report.json"
    assert (
        main(
            [
                "report",
                "--state",
                str(tmp_path / "state.sqlite"),
                "--format",
                "json",
                "--output",
                str(report_file),
            ]
        )
        == 0
    )
    report = json.loads(report_file.read_text())
    new = {(i["study"], i["patient"]) for i in report["newCandidates"]}
    assert {(NCT, f"Patient/{t_all}"), (STUDY, f"Patient/{b_all}")} <= new
    assert (STUDY, f"Patient/{t_all}") not in new and (NCT, f"Patient/{b_all}") not in new


def assert_flagged_for_their_study(found: dict, t_all: str, b_all: str) -> None:
    [t_subject], [t_task] = found[(NCT, t_all)]
    [b_subject], [b_task] = found[(STUDY, b_all)]
    assert found[(STUDY, t_all)] == ([], []) and found[(NCT, b_all)] == ([], [])
    assert t_subject["status"] == b_subject["status"] == "candidate"
    assert t_subject["study"]["reference"] != b_subject["study"]["reference"]
    assert t_task["focus"]["reference"] == f"ResearchSubject/{t_subject['id']}"
    assert b_task["focus"]["reference"] == f"ResearchSubject/{b_subject['id']}"
    assert STUDY in b_task["description"] and NCT in t_task["description"]


def test_one_service_flags_pushed_patients_for_the_study_they_fit(hapi_url, tmp_path):
    publish_both(hapi_url)
    t_all, b_all = (f"svc-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("t", "b"))
    today = date.today()
    resources = candidate_on_server(t_all, today) + b_all_candidate_on_server(b_all, today)
    for resource in resources:  # an engine's patients carry the source's MRN
        if resource["resourceType"] == "Patient":
            resource["identifier"] = [{"system": MRN, "value": resource["id"]}]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }
    settings = ServiceSettings(
        hapi_url, tmp_path / "inbox.sqlite", sources=Sources.from_legacy([f"{KEY}:push"], None), cpu_workers=0
    )
    with TestClient(create_app(settings, definitions())) as service:
        headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {KEY}"}
        reply = service.post("/fhir", content=json.dumps(bundle), headers=headers)
        assert reply.status_code == 202, reply.text
        deadline = time.monotonic() + 90
        while (done := service.get(reply.headers["Location"], headers=headers).json())["state"] not in (
            "done",
            "dead",
        ):
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
    assert done["state"] == "done", done
    by_pair = {(p["study"], p["patient"]): p for p in done["result"]["patients"]}
    # The forwarded patients' server ids come from the result (the service may give derived ids).
    assert len(by_pair) == 4, by_pair  # two patients x two studies: flags per study
    statuses = {key: value["status"] for key, value in by_pair.items()}
    assert sorted(statuses.values()) == ["candidate", "candidate", "not-eligible", "not-eligible"]
    ids = {
        study: [
            p.removeprefix("Patient/") for (s, p), st in statuses.items() if s == study and st == "candidate"
        ]
        for study in (NCT, STUDY)
    }
    [t_id], [b_id] = ids[NCT], ids[STUDY]
    assert t_id != b_id
    found = run(lambda c: _gather(c, {(s, pid) for s in (NCT, STUDY) for pid in (t_id, b_id)}), hapi_url)
    assert_flagged_for_their_study(found, t_id, b_id)


async def _gather(client: FhirClient, pairs: set[tuple[str, str]]) -> dict:
    return {pair: await flags(client, *pair) for pair in pairs}


def test_a_study_added_to_a_running_worker_is_screened_the_same_day(hapi_url, tmp_path):
    """A worker that served one study and is restarted with a second screens the second study's
    patients at once (a full pass), not only those whose data change after the restart."""
    publish_both(hapi_url)
    b_all = f"added-b-{uuid.uuid4().hex[:8]}"
    run(
        lambda c: c.transaction(
            put_transaction(b_all_candidate_on_server(b_all, date.today())), idempotent=True
        ),
        hapi_url,
    )
    first, both = definitions()[:1], definitions()

    async def once(client: FhirClient, served: list) -> tuple[list[dict], list[dict]]:
        state = WorkerState(tmp_path / "state.sqlite")
        try:
            worker = Worker(client, served, state, WorkerConfig(once=True, overlap=0))
            assert await worker.run() == 0
        finally:
            state.close()
        return await flags(client, STUDY, b_all)

    assert run(lambda c: once(c, first), hapi_url) == ([], [])  # only NCT06849401 served: no flag
    [subject], [task] = run(lambda c: once(c, both), hapi_url)  # same day, nothing changed on the server
    assert (
        subject["status"] == "candidate" and task["focus"]["reference"] == f"ResearchSubject/{subject['id']}"
    )
