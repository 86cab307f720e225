"""One pipeline, one guard: a record that cannot be screened is that patient's ``error``, the run goes on.

Fed through every entry point that runs without a server: the pipeline itself (sync and async
sources), the report formats, ``screen --source`` (Bundle, NDJSON, NDJSON on two worker processes),
``$screen`` and ``$match``. Files and pushed data are checked against the FHIR model at the edge (a
malformed resource there is refused with one clear error, as before), so what reaches the engine
from them is valid FHIR: there the guard is shown with an engine failure injected for one patient.
Server data is not checked at the edge: tests/integration/test_malformed_record.py feeds HAPI's answers,
made malformed on the way, to ``screen --fhir-url``, the worker and the service.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.cli import main
from adapter.pipeline import Pipeline
from adapter.screening.engine import Screener
from adapter.screening.report import render
from adapter.screening.results import PatientResult
from adapter.screening.run import report_for
from adapter.screening.unmapped import UnmappedCollector
from adapter.service.app import ServiceSettings, create_app
from adapter.service.sources import Sources
from mappings.clinical.record import PatientRecord, RecordBuilder
from tests.support.clinical import AS_OF, candidate_resources, definition

KEY = "pipeline-key-0123456789abcdef"
RELAPSE, CD7 = 2, 4  # indexes in candidate_resources(): the relapse Condition, the CD7 Observation


def resources_of(pid: str) -> list[dict[str, Any]]:
    """A candidate's resources for patient ``pid``, with ids of its own (the same on every call)."""
    out = []
    for index, resource in enumerate(copy.deepcopy(candidate_resources())):
        if resource["resourceType"] == "Patient":
            resource["id"] = pid
        else:
            resource["id"] = f"{pid}-{resource['resourceType'].lower()}-{index}"
            resource["subject"] = {"reference": f"Patient/{pid}"}
        out.append(resource)
    return out


def malformed(pid: str, shape: str) -> list[dict[str, Any]]:
    resources = resources_of(pid)
    if shape == "clinical-status-string":
        resources[RELAPSE]["clinicalStatus"] = "active"  # a CodeableConcept in FHIR
    else:
        resources[CD7]["valueQuantity"] = "93.5 %"  # a Quantity in FHIR
    return resources


SHAPES = {
    "clinical-status-string": "Condition.clinicalStatus",
    "value-quantity-string": "Observation.valueQuantity",
}


def records_of(*groups: list[dict[str, Any]]) -> list[PatientRecord]:
    builder = RecordBuilder()
    for group in groups:
        for resource in group:
            builder.add(resource)
    return sorted(builder.records(), key=lambda r: r.key)


def alone(pid: str) -> dict[str, Any]:
    """The patient's result screened on its own (what a run with a broken neighbour must not change)."""
    [record] = records_of(resources_of(pid))
    return Pipeline(Screener(definition(), AS_OF)).run([record])[0].model_dump(mode="json", by_alias=True)


@pytest.fixture
def engine_fails_for_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the engine that only Patient/bad's (valid) record trips."""
    original = Screener.screen

    def screen(self: Screener, record: PatientRecord) -> PatientResult:
        if record.key == "Patient/bad":
            raise AttributeError("'str' object has no attribute 'get'")
        return original(self, record)

    monkeypatch.setattr(Screener, "screen", screen)


# --- the pipeline -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_a_malformed_record_among_good_ones_is_that_patients_error_and_the_run_goes_on(shape, caplog):
    records = records_of(resources_of("good-1"), malformed("bad", shape), resources_of("good-2"))
    seen: list[tuple[int, int]] = []
    unmapped = UnmappedCollector(definition())
    pipeline = Pipeline(
        Screener(definition(), AS_OF), unmapped=unmapped, progress=lambda n, t: seen.append((n, t)), total=3
    )
    with caplog.at_level(logging.WARNING, logger="adapter.pipeline"):
        results = {r.patient: r for r in pipeline.run(records)}

    assert [r.status for r in results.values()] == ["error", "candidate", "candidate"]
    for pid in ("good-1", "good-2"):
        assert results[f"Patient/{pid}"].model_dump(mode="json", by_alias=True) == alone(pid)
    bad = results["Patient/bad"]
    assert bad.criteria == [] and bad.latest_data is None
    assert bad.reason is not None and bad.reason.startswith(
        "Condition/bad-" if "Condition" in SHAPES[shape] else "Observation/bad-"
    )
    assert SHAPES[shape] in bad.reason
    assert (pipeline.screened, pipeline.errors) == (3, 1)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    [logged] = [r for r in caplog.records if r.getMessage() == "patient could not be screened"]
    assert logged.patient == "Patient/bad" and logged.resource in bad.reason  # type: ignore[attr-defined]
    assert logged.error in ("AttributeError", "TypeError")  # type: ignore[attr-defined]
    assert re.fullmatch(r"\w+\.py:\d+", logged.origin)  # type: ignore[attr-defined]  # code, never data


def test_an_async_source_gives_the_same_results():
    records = records_of(resources_of("good-1"), malformed("bad", "clinical-status-string"))

    async def source() -> AsyncIterator[PatientRecord]:
        for record in records:
            yield record

    sync = Pipeline(Screener(definition(), AS_OF)).run(records)
    pipeline = Pipeline(Screener(definition(), AS_OF))
    assert asyncio.run(pipeline.run_async(source())) == sync
    assert pipeline.errors == 1


def test_an_engine_bug_on_valid_data_is_an_error_naming_the_patient(engine_fails_for_bad):
    results = Pipeline(Screener(definition(), AS_OF)).run(records_of(resources_of("bad"), resources_of("ok")))
    assert [(r.patient, r.status) for r in results] == [("Patient/bad", "error"), ("Patient/ok", "candidate")]
    assert results[0].reason == "cannot screen Patient/bad: unexpected data (AttributeError)"


# --- the contract and the formats ---------------------------------------------------------------


def report_with(*groups: list[dict[str, Any]]) -> Any:
    unmapped = UnmappedCollector(definition())
    results = Pipeline(Screener(definition(), AS_OF), unmapped=unmapped).run(records_of(*groups))
    return report_for(definition(), AS_OF, results, unmapped)


def test_without_errors_the_json_has_no_new_field():
    data = json.loads(render(report_with(resources_of("good-1")), "json"))
    assert "errors" not in data["summary"]
    assert set(data["patients"][0]) == {"patient", "status", "criteria", "latestData"}


def test_an_error_is_counted_listed_and_shown_in_every_format():
    report = report_with(resources_of("good-1"), malformed("bad", "clinical-status-string"))
    data = json.loads(render(report, "json"))
    summary = data["summary"]
    assert (summary["screened"], summary["candidates"], summary["notEligible"], summary["errors"]) == (
        2,
        1,
        0,
        1,
    )
    assert summary["funnel"]["screened"] == 1 and summary["funnel"]["candidates"] == 1  # errors stay out
    bad = next(p for p in data["patients"] if p["patient"] == "Patient/bad")
    assert bad["status"] == "error" and bad["criteria"] == [] and "Condition.clinicalStatus" in bad["reason"]

    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    [row] = [r for r in rows if r["patient"] == "Patient/bad"]
    assert row["status"] == "error" and row["criterion"] == "" and row["reason"] == bad["reason"]

    html = render(report, "html")
    assert "<strong>1 could not be screened</strong>" in html
    errors_section = html.split("id='h-errors'")[1].split("</section>")[0]
    assert "Patient/bad" in errors_section and "Condition.clinicalStatus" in errors_section
    assert "h-out" not in html  # not in the "Not eligible" section: an error is not an exclusion

    funnel = render(report, "funnel")
    assert "Could not be screened (1)" in funnel and "Patient/bad: Condition/bad-" in funnel


# --- screen --source ------------------------------------------------------------------------------


def write_bundle(path: Path, *groups: list[dict[str, Any]]) -> Path:
    entries = [{"resource": r} for group in groups for r in group]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def write_ndjson(folder: Path, *groups: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    by_type: dict[str, list[str]] = {}
    for resource in (r for group in groups for r in group):
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")
    return folder


def screen_cli(capsys: pytest.CaptureFixture[str], source: Path, out: Path, *extra: str) -> tuple[int, str]:
    argv = ["screen", "--source", str(source), "--as-of", AS_OF.isoformat(), "--output", str(out), "--quiet"]
    try:
        code = main([*argv, *extra])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def patients(out: Path) -> dict[str, dict[str, Any]]:
    return {p["patient"]: p for p in json.loads(out.read_text())["patients"]}


SOURCES = {
    "bundle": (lambda tmp, *groups: write_bundle(tmp / "in.json", *groups), ()),
    "ndjson": (lambda tmp, *groups: write_ndjson(tmp / "export", *groups), ("--workers", "1")),
    "ndjson-2-workers": (lambda tmp, *groups: write_ndjson(tmp / "export", *groups), ("--workers", "2")),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_screen_files_reports_the_error_writes_the_others_and_exits_3(
    kind, tmp_path, capsys, engine_fails_for_bad
):
    write, extra = SOURCES[kind]
    good = [resources_of(f"good-{n}") for n in range(4)]  # on two workers, both get patients
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    code, err = screen_cli(
        capsys, write(tmp_path / "with", *good, resources_of("bad")), tmp_path / "with.json", *extra
    )
    assert code == 3
    assert err.strip().splitlines()[-1] == (
        "trial-adapter: warning: 1 patients could not be screened (status error in the report)"
    )
    assert "Traceback" not in err
    assert screen_cli(capsys, write(tmp_path / "without", *good), tmp_path / "without.json", *extra)[0] == 0

    found, expected = patients(tmp_path / "with.json"), patients(tmp_path / "without.json")
    assert found.pop("Patient/bad") == {
        "patient": "Patient/bad",
        "status": "error",
        "criteria": [],
        "reason": "cannot screen Patient/bad: unexpected data (AttributeError)",
    }
    assert found == expected  # the good patients' results are unchanged
    assert json.loads((tmp_path / "with.json").read_text())["summary"]["errors"] == 1


def test_a_malformed_resource_in_a_file_is_still_refused_at_the_edge(tmp_path, capsys):
    """Files are checked against the FHIR model as they are read: the file is refused in one line."""
    source = write_bundle(
        tmp_path / "in.json", resources_of("good"), malformed("bad", "clinical-status-string")
    )
    code, err = screen_cli(capsys, source, tmp_path / "out.json")
    assert code == 1 and not (tmp_path / "out.json").exists()
    assert "Condition.clinicalStatus" in err.strip().splitlines()[-1]


# --- $screen and $match ---------------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServiceSettings(
        "http://127.0.0.1:9/fhir",
        tmp_path / "inbox.sqlite",
        sources=Sources.from_legacy([f"{KEY}:push"], None),
        process=False,
        cpu_workers=0,
    )
    with TestClient(create_app(settings, definition())) as client:
        yield client


def post(client: TestClient, path: str, body: Any, accept: str = "application/fhir+json") -> Any:
    headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {KEY}", "Accept": accept}
    return client.post(path, content=json.dumps(body), headers=headers)


def bundle_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


SCREEN = f"/fhir/ResearchStudy/$screen?asOf={AS_OF.isoformat()}"


def test_screen_operation_answers_an_error_with_its_reason(service, engine_fails_for_bad):
    reply = post(service, SCREEN, bundle_of(resources_of("bad")))
    assert reply.status_code == 200
    parameters = {p["name"]: p for p in reply.json()["parameter"]}
    assert parameters["status"]["valueCode"] == "error"
    assert (
        parameters["reason"]["valueString"] == "cannot screen Patient/bad: unexpected data (AttributeError)"
    )
    assert "criterion" not in parameters

    report = post(service, SCREEN, bundle_of(resources_of("bad")), accept="application/json").json()
    assert report["summary"]["errors"] == 1 and report["patients"][0]["status"] == "error"
    good = post(service, SCREEN, bundle_of(resources_of("good")), accept="application/json").json()
    assert good["patients"][0]["status"] == "candidate" and "errors" not in good["summary"]


def test_match_never_matches_an_error(service, engine_fails_for_bad):
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "trialMatchClinicalData", "resource": bundle_of(resources_of("bad"))}],
    }
    reply = post(service, "/fhir/ResearchStudy/$match", body)
    assert reply.status_code == 200
    output = {p["name"]: p for p in reply.json()["parameter"]}
    assert output["trialMatchOutput"]["resource"]["total"] == 0
    result = {p["name"]: p for p in output["result"]["part"]}
    assert result["status"]["valueCode"] == "error" and result["score"]["valueDecimal"] == 0.0


def test_a_malformed_push_is_still_refused_at_the_door(service):
    reply = post(service, SCREEN, bundle_of(malformed("bad", "clinical-status-string")))
    assert reply.status_code in (400, 422)
    assert reply.json()["resourceType"] == "OperationOutcome"
