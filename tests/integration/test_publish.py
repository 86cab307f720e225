"""Publishing the study to HAPI: idempotent, valid against our profiles, clear errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapter import publish as publish_module
from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.fhir_data import conformance_resources

NCT = "https://clinicaltrials.gov|NCT06849401"
PROFILE = "http://trial-adapter.org/fhir/StructureDefinition/"
STUDY_DIR = Path(__file__).resolve().parents[2] / "mappings" / "studies" / "NCT06849401"


async def study_resources(client: FhirClient, identifier: str = NCT) -> dict[str, dict]:
    [study] = await client.search_resources("ResearchStudy", {"identifier": identifier})
    group = await client.get_json(study["enrollment"][0]["reference"])
    [protocol_ref] = study["protocol"]
    protocol = await client.get_json(protocol_ref["reference"])
    sponsor = await client.get_json(study["sponsor"]["reference"])
    return {"ResearchStudy": study, "Group": group, "PlanDefinition": protocol, "Organization": sponsor}


def on_server(hapi_url: str, work: Callable[[FhirClient], Awaitable[Any]]) -> Any:
    """Run async checks against the server from a synchronous test (the CLI owns its own loop)."""

    async def go() -> Any:
        async with FhirClient(hapi_url) as client:
            return await work(client)

    return asyncio.run(go())


def find_study(client: FhirClient) -> Awaitable[list[dict]]:
    return client.search_resources("ResearchStudy", {"identifier": NCT})


def versions(resources: dict[str, dict]) -> dict[str, tuple[str, str]]:
    return {k: (v["id"], v["meta"]["versionId"]) for k, v in resources.items()}


def test_dry_run_then_publish_twice_is_idempotent(hapi_url, capsys, tmp_path, monkeypatch):
    # A study of its own (the same record under a fresh NCT number, from TRIAL_ADAPTER_STUDIES), so the
    # server holds none of it whatever other tests published before.
    nct = f"NCT9{uuid.uuid4().int % 10**7:07d}"
    folder = tmp_path / "studies" / nct
    folder.mkdir(parents=True)
    for name in ("study.json", "criteria.yaml"):
        text = (STUDY_DIR / name).read_text(encoding="utf-8").replace("NCT06849401", nct)
        (folder / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv("TRIAL_ADAPTER_STUDIES", str(tmp_path / "studies"))
    identifier = f"https://clinicaltrials.gov|{nct}"

    def find(client: FhirClient) -> Awaitable[list[dict]]:
        return client.search_resources("ResearchStudy", {"identifier": identifier})

    assert on_server(hapi_url, find) == []
    assert main(["--study", nct, "publish", "--fhir-url", hapi_url, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("create") == 4
    assert on_server(hapi_url, find) == []  # a dry run writes nothing

    assert main(["--study", nct, "publish", "--fhir-url", hapi_url]) == 0
    first = versions(on_server(hapi_url, lambda c: study_resources(c, identifier)))
    assert main(["--study", nct, "publish", "--fhir-url", hapi_url]) == 0
    second_run = capsys.readouterr()
    assert "nothing to do" in second_run.err
    assert second_run.out.count("unchanged") == 4
    assert (
        versions(on_server(hapi_url, lambda c: study_resources(c, identifier))) == first
    )  # same ids, no new versions


def test_published_study_is_found_by_nct_with_group_and_protocol(hapi_url):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    found = on_server(hapi_url, study_resources)
    assert found["ResearchStudy"]["title"].startswith("The Safety and Efficacy of VGO-Cs01p")
    assert found["Group"]["actual"] is False and found["Group"]["type"] == "person"
    criterion_ids = {
        sub["valueString"]
        for c in found["Group"]["characteristic"]
        for ext in c["extension"]
        for sub in ext["extension"]
        if sub["url"] == "id"
    }
    assert criterion_ids == {f"inclusion-{n}" for n in range(1, 14)} | {
        f"exclusion-{n}" for n in range(1, 21)
    }
    assert len(found["PlanDefinition"]["action"]) >= 2


def test_published_resources_pass_validate_against_our_profiles(hapi_url):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    expected = {
        "ResearchStudy": "trial-research-study",
        "Group": "eligibility-group",
        "PlanDefinition": "trial-protocol",
    }

    async def validate(client: FhirClient) -> dict[str, list[dict]]:
        for resource in conformance_resources():
            await client.request("PUT", f"{resource['resourceType']}/{resource['id']}", json_body=resource)
        published = await study_resources(client)
        issues = {}
        for rtype, profile in expected.items():
            resource = published[rtype]
            assert PROFILE + profile in resource["meta"]["profile"]
            response = await client.request(
                "POST", f"{rtype}/$validate", params={"profile": PROFILE + profile}, json_body=resource
            )
            issues[rtype] = response.json().get("issue") or []
        return issues

    for rtype, issues in on_server(hapi_url, validate).items():
        errors = [i for i in issues if i["severity"] in ("error", "fatal")]
        assert errors == [], f"{rtype}: {errors}"


def test_wrong_url_gives_one_clear_line_and_exit_1(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["publish", "--fhir-url", "http://127.0.0.1:9/fhir", "--timeout", "2"])
    assert exited.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: JSON retry logs
    assert last == "trial-adapter: error: cannot reach 127.0.0.1:9: ConnectError"


def test_rejected_resource_reports_the_servers_diagnostics(hapi_url, capsys, monkeypatch):
    real = publish_module.transaction_bundle

    def broken(built):
        bundle = real(built)
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "ResearchStudy":
                entry["resource"]["status"] = "not-a-status"
        return bundle

    monkeypatch.setattr(publish_module, "transaction_bundle", broken)
    with pytest.raises(SystemExit) as exited:
        main(["publish", "--fhir-url", hapi_url])
    assert exited.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("trial-adapter: error: HTTP 400 from POST /fhir") and "not-a-status" in last
