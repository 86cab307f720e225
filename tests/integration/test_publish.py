"""Publishing the study to HAPI: idempotent, valid against our profiles, clear errors."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from pathlib import Path

import pytest

from adapter import publish as publish_module
from adapter.cli import main
from adapter.fhir.client import FhirClient
from mappings.criteria import load_criteria
from mappings.valuesets import concept_valuesets
from tests.support.fhir_data import conformance_resources
from tests.support.server import on_server, study_resources

NCT = "https://clinicaltrials.gov|NCT06849401"
PROFILE = "http://trial-adapter.org/fhir/StructureDefinition/"
STUDY_DIR = Path(__file__).resolve().parents[2] / "mappings" / "studies" / "NCT06849401"


def find_study(client: FhirClient) -> Awaitable[list[dict]]:
    return client.search_resources("ResearchStudy", {"identifier": NCT})


def versions(resources: dict[str, dict]) -> dict[str, tuple[str, str]]:
    return {k: (v["id"], v["meta"]["versionId"]) for k, v in resources.items()}


def lines_starting(text: str, action: str) -> int:
    return sum(line.startswith(action) for line in text.splitlines())


async def published_valuesets(client: FhirClient, nct: str = "NCT06849401") -> dict[str, dict]:
    """The concept-set ValueSets on the server, by canonical url (each looked up as publish does)."""
    wanted = concept_valuesets(load_criteria(STUDY_DIR / "criteria.yaml"))
    found = {}
    for valueset in wanted:
        url = valueset["url"].replace("nct06849401", nct.lower())
        matches = await client.search_resources("ValueSet", {"url": url})
        assert len(matches) <= 1, url
        if matches:
            found[url] = matches[0]
    return found


N_VALUESETS = len(concept_valuesets(load_criteria(STUDY_DIR / "criteria.yaml")))


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
    dry = capsys.readouterr().out
    assert lines_starting(dry, "create") == 4 + N_VALUESETS
    assert lines_starting(dry, "create    ValueSet?url=") == N_VALUESETS  # the dry run lists them
    assert on_server(hapi_url, find) == []  # a dry run writes nothing
    assert on_server(hapi_url, lambda c: published_valuesets(c, nct)) == {}

    assert main(["--study", nct, "publish", "--fhir-url", hapi_url]) == 0
    first = versions(on_server(hapi_url, lambda c: study_resources(c, identifier)))
    first_sets = versions(on_server(hapi_url, lambda c: published_valuesets(c, nct)))
    assert len(first_sets) == N_VALUESETS
    assert main(["--study", nct, "publish", "--fhir-url", hapi_url]) == 0
    second_run = capsys.readouterr()
    assert "nothing to do" in second_run.err
    assert lines_starting(second_run.out, "unchanged") == 4 + N_VALUESETS
    assert (
        versions(on_server(hapi_url, lambda c: study_resources(c, identifier))) == first
    )  # same ids, no new versions
    assert versions(on_server(hapi_url, lambda c: published_valuesets(c, nct))) == first_sets


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


def test_published_valuesets_are_on_the_server_and_validate(hapi_url):
    # Only $validate: HAPI without SNOMED CT loaded cannot expand is-a filters, so no $expand here.
    assert main(["publish", "--fhir-url", hapi_url]) == 0

    async def check(client: FhirClient) -> tuple[dict[str, dict], list[dict]]:
        found = await published_valuesets(client)
        t_all = found["http://trial-adapter.org/fhir/ValueSet/nct06849401-t-all"]
        outcome = (await client.request("POST", "ValueSet/$validate", json_body=t_all)).json()
        assert outcome["resourceType"] == "OperationOutcome"
        return found, outcome.get("issue") or []

    found, issues = on_server(hapi_url, check)
    assert len(found) == N_VALUESETS
    expected = {vs["url"]: vs for vs in concept_valuesets(load_criteria(STUDY_DIR / "criteria.yaml"))}
    for url, held in found.items():
        assert held["compose"] == expected[url]["compose"]  # what screening evaluates, as published
    errors = [i for i in issues if i["severity"] in ("error", "fatal")]
    assert errors == []


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
