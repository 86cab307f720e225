"""Files screening population first (issue 18): raw-byte recognition of a patient's lines, the population
pass, deciding Observations, byte-identical output across workers and with ``--all-patients``."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import main
from adapter.screening.engine import Screener
from adapter.screening.reads import ScreeningReads
from adapter.screening.report import render
from adapter.screening.run import report_for, screen_files, screen_records
from adapter.screening.unmapped import UnmappedCollector
from adapter.sources.files import SourceError, load_records
from adapter.sources.ndjson_scan import LineFilter
from adapter.sources.population import DecidingObservations, PopulationSigns, observation_codes
from bench.dense import dense_person, leukaemia_patient
from bench.synth import Options
from mappings.clinical.record import PatientRecord
from tests.support.clinical import (
    AS_OF,
    CREATININE_MASS,
    CREATININE_MOLES,
    CRITERIA_PATH,
    ICD10CM,
    PLATELETS,
    SCT,
    candidate_resources,
    concept,
    condition,
    definition,
    obs,
    patient,
)
from tests.support.exports import compact, sample_export, write

POP = LineFilter(["p1", "pA.b-9"])


def spaced(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode() + b"\n"


def observation_of(reference: Any, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final", "subject": reference, **extra}


# --- raw-byte recognition ------------------------------------------------------------------------


@pytest.mark.parametrize("dump", [compact, spaced], ids=["compact", "spaced"])
@pytest.mark.parametrize(
    ("reference", "wanted"),
    [
        ("Patient/p1", True),
        ("Patient/pA.b-9", True),
        ("http://hospital.example/fhir/Patient/p1", True),
        ("Patient/p1/_history/3", True),
        ("Patient/p2", False),
        ("Patient/p10", False),  # p1 is a prefix of p10: not the same patient
        ("Patient/xp1", False),
        ("urn:uuid:7d3f6a4e-0000-4000-8000-000000000000", True),  # cannot be resolved: parsed (an error)
    ],
)
def test_a_line_is_recognised_by_its_patient_reference(dump, reference, wanted):
    assert POP.wanted_line(dump(observation_of({"reference": reference}))) is wanted


def test_escapes_and_unusual_shapes_are_always_parsed():
    escaped_slash = b'{"resourceType":"Observation","id":"o","subject":{"reference":"Patient\\/p1"}}\n'
    assert POP.wanted_line(escaped_slash)
    other_escaped = escaped_slash.replace(b"p1", b"p2")
    assert not POP.wanted_line(other_escaped)
    unicode_escape = (
        b'{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/\\u0070\\u0032"}}\n'
    )
    assert POP.wanted_line(unicode_escape)  # \\u can spell any id or key: parse it
    type_not_first = b'{"id":"o","resourceType":"Observation","subject":{"reference":"Patient/p2"}}\n'
    assert POP.wanted_line(type_not_first)
    truncated = b'{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/p2"'
    assert POP.wanted_line(truncated)
    no_patient = compact({"resourceType": "Condition", "id": "c", "subject": {"reference": 5}})
    assert POP.wanted_line(no_patient)  # names no patient we can see: read as before (an error here)
    assert not POP.wanted_line(b"\n") and not POP.wanted_line(b"  \n")


def test_patient_lines_medications_and_contained_resources():
    assert POP.wanted_line(compact(patient(id="p1")))
    assert not POP.wanted_line(compact(patient(id="p2")))
    assert POP.wanted_line(b'{"resourceType":"Patient","meta":{},"id":"p2"}\n')  # id not second: parsed
    assert POP.wanted_line(b'{"resourceType":"Patient","id":5}\n')
    assert POP.wanted_line(compact({"resourceType": "Medication", "id": "m1"}))  # shared by everyone
    contained = observation_of(
        {"reference": "Patient/p2"},
        contained=[{"resourceType": "Observation", "id": "x", "subject": {"reference": "Patient/p1"}}],
    )
    assert POP.wanted_line(compact(contained))  # any mention is enough: parsing attributes it


def _corpus() -> list[bytes]:
    rng = random.Random(18)
    lines = []
    for n in range(300):
        pid = rng.choice(["p1", "p2", "p10", "pA.b-9", "q7"])
        dump = rng.choice([compact, compact, spaced])
        kind = rng.random()
        if kind < 0.1:
            lines.append(dump(patient(id=pid)))
        elif kind < 0.15:
            lines.append(dump({"resourceType": "Medication", "id": f"m{n}"}))
        elif kind < 0.2:
            lines.append(
                b'{"resourceType":"Observation","subject":{"reference":"Patient\\/' + pid.encode() + b'"}}\n'
            )
        elif kind < 0.22:
            lines.append(
                b'{"resourceType":"Observation","note":"\\u00e9","subject":{"reference":"Patient/q7"}}\n'
            )
        elif kind < 0.24:
            lines.append(dump({"resourceType": "Encounter", "id": f"e{n}"}))
        else:
            lines.append(dump(obs(PLATELETS, 100 + n, "10*9/L", ago=n % 40, subject=pid)))
    return lines


@pytest.mark.parametrize("filters", [POP, LineFilter(["q7"]), LineFilter([])], ids=["p1", "q7", "nobody"])
def test_a_whole_chunk_is_filtered_exactly_as_line_by_line(filters):
    lines = _corpus()
    for chunk_lines in (lines, [line for line in lines if line.startswith(b'{"resourceType":"')]):
        chunk = b"".join(chunk_lines)
        offsets, at = [], 0
        for line in chunk_lines:
            offsets.append(at)
            at += len(line)
        expected = [o for o, line in zip(offsets, chunk_lines, strict=True) if filters.wanted_line(line)]
        assert filters.wanted_starts(chunk) == expected


def test_every_line_mode_keeps_what_skippable_line_would_read():
    reads = ScreeningReads(definition())
    every = LineFilter(None, coded=reads.criteria_code)
    lines = [
        compact(obs(PLATELETS, 90, "10*9/L", ago=3, subject="p2")),
        compact({"resourceType": "Observation", "id": "hr", "code": {"text": "heart rate"}}),
        b'{"resourceType":"Observation","note":"\\u00e9","subject":{"reference":"Patient/q7"}}\n',
        compact(obs(CREATININE_MASS, 0.5, "mg/dL", ago=3, subject="p9")),
    ]
    chunk = b"".join(lines)
    offsets = [sum(len(x) for x in lines[:i]) for i in range(len(lines))]
    assert every.wanted_starts(chunk) == [
        o for o, line in zip(offsets, lines, strict=True) if not reads.skippable_line(line)
    ]
    mixed = chunk + compact(patient(id="p2"))  # not one type: every line, as before
    assert every.wanted_starts(mixed) == [*offsets, len(chunk)]


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 50])
def test_line_ranges_start_at_line_starts_and_cover_the_file(parts, tmp_path):
    from adapter.sources.ndjson_scan import line_ranges

    rng = random.Random(parts)
    text = b"".join(b"x" * rng.randint(0, 40) + b"\n" for _ in range(30)) + b"tail-without-newline"
    path = tmp_path / "f.ndjson"
    path.write_bytes(text)
    ranges = line_ranges(path, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(text)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(ranges))
    assert all(start == 0 or text[start - 1 : start] == b"\n" for start, _ in ranges)
    assert len(ranges) <= parts


# --- population ------------------------------------------------------------------------------------


def test_signs_of_all_are_conservative():
    signs = PopulationSigns(definition())
    assert signs.is_sign(condition((SCT, "277575008")))
    assert signs.is_sign({"resourceType": "Condition", "code": {"text": "relapsed T-ALL"}})
    assert signs.is_sign(
        {
            "resourceType": "Condition",
            "code": {"coding": [{"code": "x", "display": "Acute lymphoblastic leukemia"}]},
        }
    )
    assert signs.is_sign({"resourceType": "Condition", "code": "T-ALL"})  # malformed: cannot tell
    assert not signs.is_sign(condition((SCT, "38341003")))  # hypertension
    assert not signs.is_sign({"resourceType": "Condition", "code": {"text": "allergy to all nuts"}})


def test_signs_read_the_criteria_wording_broader_codes_and_the_site_concept_maps(tmp_path):
    """Issue 12's classes are in the files population too: a child coded any of these ways is screened."""
    from mappings.criteria import load_criteria
    from mappings.terminology.conceptmap import load_concept_maps

    local = "http://hospital.example/dx"
    site_map = tmp_path / "site-map.json"
    site_map.write_text(
        json.dumps(
            {
                "resourceType": "ConceptMap",
                "status": "active",
                "group": [
                    {
                        "source": local,
                        "target": SCT,
                        "element": [
                            {"code": "TALL", "target": [{"code": "277575008", "equivalence": "equivalent"}]}
                        ],
                    }
                ],
            }
        )
    )
    plain = PopulationSigns(definition())
    mapped = PopulationSigns(load_criteria(CRITERIA_PATH).with_concept_maps(load_concept_maps([site_map])))
    local_coded = {"resourceType": "Condition", "code": {"coding": [{"system": local, "code": "TALL"}]}}
    assert mapped.is_sign(local_coded) and not plain.is_sign(local_coded)
    header = {"resourceType": "Condition", "code": {"coding": [{"system": ICD10CM, "code": "C91.0"}]}}
    assert plain.is_sign(header)  # the ICD-10-CM header above C91.0x
    french = {"resourceType": "Condition", "code": {"text": "leucémie aiguë lymphoblastique T en rechute"}}
    assert plain.is_sign(french)


def test_a_patient_whose_all_condition_is_only_in_a_late_file_is_screened(tmp_path):
    resources = candidate_resources()
    other = [patient(id="p2"), obs(PLATELETS, 200, "10*9/L", ago=1, subject="p2")]
    conditions = [compact(r) for r in resources if r["resourceType"] == "Condition"]
    folder = write(
        tmp_path / "export",
        {
            "A-Observation.ndjson": [
                compact(r) for r in resources + other if r["resourceType"] == "Observation"
            ],
            "B-Patient.ndjson": [compact(resources[0]), compact(other[0])],
            "Z-late-Condition.ndjson": conditions,
        },
    )
    report = screen_files(folder, definition(), AS_OF, workers=1)
    assert [p.patient for p in report.patients] == ["Patient/p1"]
    assert report.summary.outside_population == 1
    full = screen_files(folder, definition(), AS_OF, workers=1, all_patients=True)
    assert report.patients[0] == next(p for p in full.patients if p.patient == "Patient/p1")
    assert full.summary.outside_population is None and len(full.patients) == 2


def test_a_broken_condition_of_a_patient_outside_the_population_is_still_an_error(tmp_path):
    resources = candidate_resources()
    bad = compact(
        {"resourceType": "Condition", "id": "c9", "code": "T-ALL", "subject": {"reference": "Patient/p2"}}
    )
    lines = [compact(r) for r in resources] + [bad]
    folder = write(tmp_path / "export", {"Mixed.ndjson": lines})
    with pytest.raises(SourceError, match=r"Mixed\.ndjson:\d+: Condition\.code"):
        screen_files(folder, definition(), AS_OF, workers=1)


# --- deciding observations -------------------------------------------------------------------------


def test_only_the_observations_that_decide_are_kept_and_answers_do_not_change():
    rng = random.Random(7)
    defn = definition()
    screener = Screener(defn, AS_OF)
    for trial in range(40):
        resources = candidate_resources()
        for n in range(60):
            code = rng.choice([PLATELETS, CREATININE_MASS, CREATININE_MOLES])
            when = rng.choice(
                [{"ago": rng.randint(-3, 60)}, {"ago": None}, {"effective": "2026-11-20T08:00:00Z"}]
            )
            status = rng.choice(["final"] * 8 + ["entered-in-error", "amended"])
            unit = "10*9/L" if code == PLATELETS else "mg/dL"
            extra = obs(code, rng.randint(1, 300), unit, status=status, id=f"x{trial}-{n}", **when)
            if rng.random() < 0.1:  # two criteria codes on one result
                extra["code"]["coding"].append(concept(*CREATININE_MOLES))
            resources.append(extra)
        everything = PatientRecord(key="Patient/p1", patient=resources[0])
        deciding = DecidingObservations(observation_codes(defn), AS_OF)
        pruned = PatientRecord(key="Patient/p1", patient=resources[0])
        for seq, resource in enumerate(resources[1:]):
            everything.resources[resource["resourceType"]].append(resource)
            if resource["resourceType"] == "Observation":
                deciding.add(seq, resource, f"line {seq}")
            else:
                pruned.resources[resource["resourceType"]].append(resource)
        pruned.resources["Observation"] = [o for _, o, _ in deciding.kept()]
        assert len(pruned.resources["Observation"]) < len(everything.resources["Observation"])
        assert screener.screen(pruned) == screener.screen(everything)


# --- byte-identical output -------------------------------------------------------------------------


def full_path_json(folder: Path) -> str:
    """The path before issue 18: every line read, every read resource validated, every patient listed."""
    defn = definition()
    reads = ScreeningReads(defn)
    builder = load_records(folder, reads)
    unmapped = UnmappedCollector(defn, reads)
    results = screen_records(builder.records(), defn, AS_OF, unmapped=unmapped)
    return render(report_for(defn, AS_OF, results, unmapped), "json")


def cli_json(capsys: pytest.CaptureFixture[str], folder: Path, *options: str) -> str:
    assert main(["screen", "--source", str(folder), "--as-of", AS_OF.isoformat(), "--quiet", *options]) == 0
    return capsys.readouterr().out


def dense_export(folder: Path) -> Path:
    """A small dense hospital, NOT sorted by patient: lines shuffled within each type's file."""
    opts = Options(obs_min=120, obs_max=150)
    resources = [r for i in (0, 1, 2, 40, 41) for r in leukaemia_patient(i, opts)]
    resources += [r for i in range(60, 72) for r in dense_person(i, opts)]
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(compact(resource))
    rng = random.Random(3)
    for lines in by_type.values():
        rng.shuffle(lines)
    return write(folder, {f"{t}.ndjson": lines for t, lines in by_type.items()})


@pytest.mark.parametrize("make", [sample_export, dense_export], ids=["sample", "dense"])
def test_workers_and_all_patients_give_the_same_bytes(make, tmp_path, capsys):
    folder = make(tmp_path / "export")
    full = full_path_json(folder)
    assert cli_json(capsys, folder, "--all-patients", "--workers", "1") == full
    assert cli_json(capsys, folder, "--all-patients", "--workers", "2") == full
    default = cli_json(capsys, folder, "--workers", "1")
    assert cli_json(capsys, folder, "--workers", "2") == default
    assert cli_json(capsys, folder) == default
    listed = {p["patient"]: p for p in json.loads(default)["patients"]}
    everyone = json.loads(full)["patients"]
    outside = [p for p in everyone if p["patient"] not in listed]
    assert json.loads(default)["summary"]["outsidePopulation"] == len(outside)
    assert all(listed[p["patient"]] == p for p in everyone if p["patient"] in listed)
    for p in outside:  # only patients with no record of ALL are left out
        diagnosis = next(c for c in p["criteria"] if c["id"] == "inclusion-2")
        assert diagnosis["reason"] == "no record of acute lymphoblastic leukaemia"


def test_workers_must_be_positive(tmp_path, capsys):
    folder = sample_export(tmp_path / "export")
    with pytest.raises(SystemExit) as exit_info:
        main(["screen", "--source", str(folder), "--workers", "0"])
    assert exit_info.value.code == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


# --- Observations beaten before parsing ------------------------------------------------------------


def test_a_line_is_beaten_only_when_provably_older_for_each_of_its_codes():
    from adapter.sources.population import RawObservation

    codes = observation_codes(definition())
    deciding = DecidingObservations(codes, AS_OF)
    deciding.add(1, obs(PLATELETS, 90, "10*9/L", ago=2, subject="p1"), "line 1")
    mine = {"Patient/p1": deciding}
    beaten = RawObservation(codes, AS_OF)
    older = obs(PLATELETS, 50, "10*9/L", ago=9, subject="p1")
    assert beaten.beaten(compact(older), mine)
    assert beaten.beaten(spaced(older), mine)
    assert not beaten.beaten(compact(obs(PLATELETS, 50, "10*9/L", ago=1, subject="p1")), mine)  # newer
    assert not beaten.beaten(compact(obs(PLATELETS, 50, "10*9/L", ago=2, subject="p1")), mine)  # a tie
    assert not beaten.beaten(compact(obs(PLATELETS, 50, "10*9/L", ago=9, subject="p2")), mine)  # not known
    two_codes = obs(PLATELETS, 50, "10*9/L", ago=9, subject="p1")
    two_codes["code"]["coding"].append(concept(*CREATININE_MASS))  # no creatinine kept yet
    assert not beaten.beaten(compact(two_codes), mine)
    unsure = [
        compact(obs(PLATELETS, 50, "10*9/L", ago=None, subject="p1")),  # undated
        compact({**older, "component": []}),
        compact({**older, "effectivePeriod": {"start": "2026-01-01"}}),
        compact({**older, "note": [{"text": 'a \\"quoted\\" note'}]}),  # any backslash
        compact({**older, "extension": [{"url": "x", "effectiveDateTime": "2026-11-22"}]}),  # two dates
        compact({**older, "subject": {"reference": "Patient/p1"}, "focus": [{"reference": "Patient/p3"}]}),
        compact(patient(id="p1")),
    ]
    for line in unsure:
        assert not beaten.beaten(line, mine), line


# --- hostile exports ---------------------------------------------------------------------------------


def _hostile_cases() -> list[Any]:
    from tests.support.hostile import BAD

    return BAD


@pytest.mark.parametrize(
    "options", [("--workers", "2"), ("--all-patients", "--workers", "2")], ids=["default", "all"]
)
@pytest.mark.parametrize("case", _hostile_cases(), ids=[c.id for c in _hostile_cases()])
def test_a_broken_export_is_the_same_clear_error_with_workers_and_all_patients(
    case, options, tmp_path, capsys
):
    from tests.support.hostile import assert_one_line_error, bad_texts, write_ndjson

    folder = write_ndjson(tmp_path / "export", bad_texts(case))
    output = tmp_path / "report.json"
    argv = [
        "screen",
        "--source",
        str(folder),
        "--as-of",
        AS_OF.isoformat(),
        "--output",
        str(output),
        "--quiet",
    ]
    try:
        code = main([*argv, *options])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    last = assert_one_line_error(code, capsys.readouterr().err, case.ndjson_error or case.bundle_error)
    assert ".ndjson:" in last and not output.exists()
