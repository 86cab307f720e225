"""Helpers for integration tests against HAPI: run async work on the server, load patients, read flags
and the published study, run the worker once, build what an engine pushes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.flagging import SUBJECT_SYSTEM, TASK_SYSTEM
from tests.support.patients import candidate_on_server, put_transaction
from tests.support.service import MRN

NCT = "NCT06849401"


def on_server(hapi_url: str, work: Callable[[FhirClient], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with FhirClient(hapi_url) as client:
            return await work(client)

    return asyncio.run(go())


def load(hapi_url: str, resources: list[dict]) -> None:
    on_server(hapi_url, lambda c: c.transaction(put_transaction(resources), idempotent=True))


def flags(hapi_url: str, patient_id: str) -> tuple[list[dict], list[dict]]:
    async def get(client: FhirClient) -> tuple[list[dict], list[dict]]:
        subjects = await client.search_resources(
            "ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{NCT}/{patient_id}"}
        )
        tasks = await client.search_resources(
            "Task", {"identifier": f"{TASK_SYSTEM}|{NCT}/{patient_id}/review"}
        )
        return subjects, tasks

    return on_server(hapi_url, get)


def worker_once(hapi_url: str, state: Path) -> None:
    assert main(["worker", "--fhir-url", hapi_url, "--once", "--state", str(state)]) == 0


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def study_resources(
    client: FhirClient, identifier: str = f"https://clinicaltrials.gov|{NCT}"
) -> dict[str, dict]:
    [study] = await client.search_resources("ResearchStudy", {"identifier": identifier})
    group = await client.get_json(study["enrollment"][0]["reference"])
    [protocol_ref] = study["protocol"]
    protocol = await client.get_json(protocol_ref["reference"])
    sponsor = await client.get_json(study["sponsor"]["reference"])
    return {"ResearchStudy": study, "Group": group, "PlanDefinition": protocol, "Organization": sponsor}


def engine_bundle(mrn: str, today: date, bundle_id: str | None = None) -> dict:
    """A collection Bundle as an engine sends it: numeric ids, an MRN identifier, Type/id references."""
    resources = candidate_on_server("12345", today)
    resources[0]["identifier"] = [{"system": MRN, "value": mrn}]
    for index, resource in enumerate(resources[1:], start=1):
        resource["id"] = str(900 + index)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }
    if bundle_id:
        bundle["identifier"] = {"system": "urn:engine:msg", "value": bundle_id}
    return bundle


def server_subjects(hapi_url: str, mrn: str) -> tuple[list[dict], list[dict]]:
    async def go() -> tuple[list[dict], list[dict]]:
        async with FhirClient(hapi_url) as client:
            patients = await client.search_resources("Patient", {"identifier": f"{MRN}|{mrn}"})
            subjects = []
            for p in patients:
                subjects += await client.search_resources(
                    "ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|NCT06849401/{p['id']}"}
                )
            return patients, subjects

    return asyncio.run(go())
