"""What screening reads: skipping unread NDJSON lines, validating only what is read, and the engine's
shortcut for records with nothing read but the Patient. Every shortcut is checked against the long way."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import main
from adapter.samples.sample_population import build_bundle
from adapter.screening.reads import ScreeningReads
from adapter.sources.files import SourceError, load_records
from mappings.clinical.record import RecordBuilder
from tests.support.clinical import (
    AS_OF,
    CAR_T,
    CD7_LOCAL,
    LOINC,
    PLATELETS,
    SCT,
    T_ALL,
    WARFARIN,
    born_years_ago,
    candidate_resources,
    concept,
    condition,
    definition,
    immunization,
    medication,
    obs,
    patient,
    procedure,
    record_of,
    screener,
)

HEART_RATE = (LOINC, "8867-4")


def build_resources() -> list[dict[str, Any]]:
    return [entry["resource"] for entry in build_bundle()["entry"]]


HYPERTENSION = (SCT, "38341003")


def reads() -> ScreeningReads:
    return ScreeningReads(definition())


def line(resource: dict[str, Any], **dumps: Any) -> bytes:
    return json.dumps(resource, **dumps).encode() + b"\n"


def compact(resource: dict[str, Any]) -> bytes:
    return line(resource, separators=(",", ":"))


# --- NDJSON lines -------------------------------------------------------------------------------


def test_a_vital_sign_line_is_skipped_compact_or_spaced():
    vital = obs(HEART_RATE, 80, "/min", ago=1)
    assert reads().skippable_line(compact(vital))
    assert reads().skippable_line(line(vital))  # '"resourceType": "Observation", ...'


@pytest.mark.parametrize(
    "code", [PLATELETS, CD7_LOCAL, (LOINC, "35641-0")], ids=["platelets", "cd7-local", "cd7-loinc"]
)
def test_an_observation_with_a_criteria_code_is_parsed(code):
    assert not reads().skippable_line(compact(obs(code, 85, "10*9/L", ago=1)))


def test_a_criteria_code_hidden_behind_an_escape_is_parsed():
    raw = compact(obs(PLATELETS, 85, "10*9/L", ago=1)).replace(b'"777-3"', b'"\\u0037\\u0037\\u0037-3"')
    assert json.loads(raw)["code"]["coding"][0]["code"] == "777-3"
    assert not reads().skippable_line(raw)


def test_a_longer_code_that_starts_with_a_criteria_code_is_still_noise():
    assert reads().skippable_line(compact(obs((LOINC, "777-30"), 1, "1", ago=1)))


def test_a_truncated_line_is_parsed_so_it_is_an_error():
    raw = compact(obs(HEART_RATE, 80, "/min", ago=1))
    assert not reads().skippable_line(raw[: len(raw) // 2])


@pytest.mark.parametrize(
    "resource",
    [
        patient(),
        condition(HYPERTENSION),
        immunization(),
        procedure(CAR_T),
        medication(WARFARIN),
        {"resourceType": "Foo", "id": "x"},
    ],
    ids=["patient", "condition", "immunization", "procedure", "medication", "unknown-type"],
)
def test_lines_of_types_screening_reads_or_does_not_know_are_parsed(resource):
    assert not reads().skippable_line(compact(resource))


def test_a_type_no_criterion_reads_is_skipped():
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "x"}}
    assert reads().skippable_line(compact(encounter))


def test_resource_type_not_first_is_parsed():
    vital = obs(HEART_RATE, 80, "/min", ago=1)
    reordered = {"id": vital["id"], **{k: v for k, v in vital.items() if k != "id"}}
    assert not reads().skippable_line(compact(reordered))


# --- parsed resources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "read"),
    [
        (patient(), True),
        (immunization(), True),
        (condition(T_ALL), True),
        (condition(HYPERTENSION), False),
        (condition(HYPERTENSION, extra_codes=[T_ALL]), True),
        ({**condition(HYPERTENSION), "code": "T-ALL"}, True),  # malformed: validation names it
        ({**condition(HYPERTENSION), "code": {"coding": {"code": "x"}}}, True),
        (procedure(CAR_T), True),
        (procedure((SCT, "80146002")), False),  # appendectomy, no surgery category
        (medication(WARFARIN), True),
        (medication((SCT, "000")), False),
        (obs(PLATELETS, 85, "10*9/L"), True),
        (obs(HEART_RATE, 80, "/min"), False),
        ({"resourceType": "Encounter", "id": "e1"}, False),
    ],
    ids=[
        "patient",
        "immunization",
        "t-all",
        "hypertension",
        "t-all-second-coding",
        "code-string",
        "coding-object",
        "car-t",
        "appendectomy",
        "warfarin",
        "unknown-drug",
        "platelets",
        "heart-rate",
        "encounter",
    ],
)
def test_reads_says_which_resources_can_change_a_result(resource, read):
    assert reads().reads(resource) is read


def test_a_condition_read_through_its_lineage_extension():
    noise = condition(HYPERTENSION)
    noise["extension"] = [{"url": "http://example.org/lineage", "valueCodeableConcept": concept(*T_ALL)}]
    assert reads().reads(noise)


def test_a_medication_by_reference_is_read():
    request = {**medication(WARFARIN), "medicationReference": {"reference": "Medication/m1"}}
    del request["medicationCodeableConcept"]
    assert reads().reads(request)


def test_only_the_patient_elements_screening_reads_are_validated():
    person = {**patient(), "name": "not a list", "birthDate": "2014-06-15"}
    part = reads().read_part(person)
    assert part == {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "2014-06-15"}


# --- files: the shortcuts change nothing but the cost -------------------------------------------


def write_export(folder: Path, resources: list[dict[str, Any]], extra: dict[str, list[bytes]]) -> Path:
    folder.mkdir()
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(compact(resource))
    for rtype, lines in extra.items():
        by_type.setdefault(rtype, []).extend(lines)
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_bytes(b"".join(lines))
    return folder


def test_skipped_lines_change_no_record_and_no_answer(tmp_path):
    resources = build_resources()
    folder = write_export(tmp_path / "export", resources, {})
    fast = {r.key: r for r in load_records(folder, reads()).records()}
    slow = {r.key: r for r in load_records(folder).records()}
    assert fast.keys() == slow.keys() and len(fast) == 26
    engine = screener()
    for key, record in slow.items():
        read_observations = [o for o in record.of_type("Observation") if reads().reads(o)]
        assert fast[key].of_type("Observation") == read_observations
        assert engine.screen(fast[key]) == engine.screen(record)


def test_a_garbled_unread_line_is_skipped_but_a_truncated_read_line_is_an_error(tmp_path, caplog):
    garbled = b'{"resourceType":"Observation","id":"v1", oops not json }\n'
    folder = write_export(tmp_path / "export", candidate_resources(), {"Observation": [garbled]})
    with caplog.at_level(logging.INFO, logger="adapter.sources.files"):
        builder = load_records(folder, reads())
    assert [r.key for r in builder.records()] == ["Patient/p1"]
    assert [(r.getMessage(), getattr(r, "count", None)) for r in caplog.records] == [
        ("resources not read", 1)
    ]

    truncated = compact(obs(HEART_RATE, 80, "/min", ago=1))[:40]
    folder = write_export(tmp_path / "export2", candidate_resources(), {"Observation": [truncated]})
    with pytest.raises(SourceError, match=r"Observation\.ndjson:\d+: invalid JSON"):
        load_records(folder, reads())


def test_the_cli_screens_an_export_with_noise_like_a_bundle_without_it(tmp_path, capsys):
    noise = [compact(obs(HEART_RATE, 70 + n, "/min", ago=n)) for n in range(50)]
    resources = candidate_resources()
    folder = write_export(tmp_path / "export", resources, {"Observation": noise})
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
        )
    )
    outputs = []
    for source in (folder, bundle):
        output = tmp_path / f"{source.name}.report.json"
        args = ["screen", "--source", str(source), "--as-of", AS_OF.isoformat(), "--output", str(output)]
        assert main([*args, "--quiet"]) == 0
        outputs.append(json.loads(output.read_text())["patients"])
    assert outputs[0] == outputs[1] and outputs[0][0]["status"] == "candidate"


# --- the engine's shortcut for bare records ------------------------------------------------------


def _long_way(record: Any) -> list[Any]:
    engine = screener()
    return [engine._criterion_result(c, record) for c in definition().criteria]


BARE_PATIENTS = [
    patient(born_years_ago(10), "female"),
    patient(born_years_ago(10), "male"),
    patient(born_years_ago(2), None),
    patient(born_years_ago(19, 1), "female"),
    patient(None, "other"),
    patient("2016", "female"),
    patient(born_years_ago(15), "male", deceased=True),
    patient(born_years_ago(15), "female", deceased="2026-01-01"),
]


@pytest.mark.parametrize("person", BARE_PATIENTS, ids=range(len(BARE_PATIENTS)))
def test_a_bare_record_gets_the_answers_of_the_long_way(person):
    noise = [
        obs(HEART_RATE, 80, "/min", ago=3),
        condition(HYPERTENSION),
        {
            "resourceType": "Procedure",
            "id": "x1",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
        },
    ]
    record = record_of(person, *noise)
    assert screener()._is_bare(record)
    result = screener().screen(record)
    assert result.criteria == _long_way(record)
    assert result.status == "not-eligible"


def test_one_read_resource_makes_a_record_not_bare():
    for resource in (
        immunization(),
        condition(HYPERTENSION, extra_codes=[T_ALL]),
        obs(PLATELETS, 85, "10*9/L"),
    ):
        record = record_of(patient(), resource)
        assert not screener()._is_bare(record)
        assert screener().screen(record).criteria == _long_way(record)


def test_every_sample_patient_gets_the_answers_of_the_long_way():
    builder = RecordBuilder()
    builder.add_all(build_resources())
    for record in builder.records():
        assert screener().screen(record).criteria == _long_way(record), record.key
