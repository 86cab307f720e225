"""An export read in parts (byte ranges) by several workers, and long histories read newest first
(issue 18): the same report and the same errors whatever the number of parts and the order of lines."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from adapter.screening.report import render
from adapter.screening.run import screen_files
from adapter.sources import export, export_part
from adapter.sources.files import SourceError
from tests.support.clinical import (
    AS_OF,
    CREATININE_MASS,
    PLATELETS,
    candidate_resources,
    definition,
    obs,
    patient,
)
from tests.support.exports import compact, sample_export, write


def history(pid: str, days: range, *, newest_first: bool) -> list[dict[str, Any]]:
    """Daily platelets and creatinine over ``days`` (days before the as-of date)."""
    order = days if newest_first else reversed(days)
    return [
        result
        for ago in order
        for result in (
            obs(PLATELETS, 100 + ago, "10*9/L", ago=ago, subject=pid, id=f"{pid}-plt-{ago}"),
            obs(CREATININE_MASS, 0.4, "mg/dL", ago=ago, subject=pid, id=f"{pid}-cr-{ago}"),
        )
    ]


@cache
def leukaemia() -> tuple[dict[str, Any], ...]:
    """Two leukaemia patients' records (made once: their ids come from a counter)."""
    resources = candidate_resources()
    other_all = [
        {**r, "id": f"b-{r.get('id', n)}", "subject": {"reference": "Patient/p2"}}
        for n, r in enumerate(candidate_resources()[1:])
    ]
    return (*resources, patient(id="p2"), *other_all)


def export_of(folder: Path, *, newest_first: bool, broken: dict[int, bytes] | None = None) -> Path:
    """Two leukaemia patients with months of daily labs and ten others, one file per type."""
    resources = list(leukaemia())
    resources += history("p1", range(3, 150), newest_first=newest_first)
    resources += history("p2", range(3, 150), newest_first=newest_first)
    for n in range(10):
        resources += [patient(id=f"q{n}"), *history(f"q{n}", range(1, 40), newest_first=newest_first)]
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(compact(resource))
    for number, line in (broken or {}).items():
        by_type["Observation"].insert(number, line)
    return write(folder, {f"{t}.ndjson": lines for t, lines in by_type.items()})


def report(folder: Path, workers: int, all_patients: bool = False) -> str:
    done = screen_files(folder, definition(), AS_OF, workers=workers, all_patients=all_patients)
    return render(done, "json")


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of a few KB are read in parts and a few records screened per worker, as a big export is
    (forked workers inherit the patch)."""
    monkeypatch.setattr(export, "PART_BYTES", 4096)
    monkeypatch.setattr(export, "SCREEN_PER_WORKER", 2)


@pytest.mark.parametrize("all_patients", [False, True], ids=["default", "all-patients"])
def test_parts_and_workers_give_the_same_bytes(all_patients, small_parts, tmp_path):
    folder = export_of(tmp_path / "export", newest_first=False)
    assert len(export._parts(export.ndjson_files(folder), 3, None)) > 6  # really read in parts
    one = report(folder, 1, all_patients)
    assert report(folder, 2, all_patients) == one
    assert report(folder, 3, all_patients) == one
    listed = json.loads(one)["patients"]
    assert [p["patient"] for p in listed][:2] == ["Patient/p1", "Patient/p2"]


def test_the_order_of_a_history_changes_neither_answers_nor_what_is_parsed(monkeypatch, tmp_path):
    parsed: list[bytes] = []
    real = export_part.parse_ndjson_line

    def counting(raw: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(raw)
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(export_part, "parse_ndjson_line", counting)
    answers = []
    for newest_first in (True, False):
        parsed.clear()
        folder = export_of(tmp_path / f"export-{newest_first}", newest_first=newest_first)
        answers.append(json.loads(report(folder, 1))["patients"])
        history_parsed = [line for line in parsed if b"-plt-" in line or b"-cr-" in line]
        # two patients x two codes: at most the newest result of each, not 147 days of them
        assert 0 < len(history_parsed) <= 4, len(history_parsed)
        assert all(b'-3"' in line for line in history_parsed)  # day 3 is the newest of the history
    assert [p["patient"] for p in answers[0]] == ["Patient/p1", "Patient/p2"]
    assert answers[0] == answers[1]


def _broken_platelets(pid: str, ago: int) -> bytes:
    line = compact(obs(PLATELETS, 90, "10*9/L", ago=ago, subject=pid, id=f"{pid}-broken"))
    return line.replace(b'"status":"final",', b'"status":"final",,')  # not JSON


@pytest.mark.parametrize("workers", [1, 3])
def test_a_broken_result_that_cannot_decide_is_not_read_and_one_that_may_is_an_error(
    workers, small_parts, tmp_path
):
    older = {5: _broken_platelets("p1", 100)}  # p1 has newer platelets: never read
    quiet = export_of(tmp_path / "older", newest_first=False, broken=older)
    assert report(quiet, workers) == report(export_of(tmp_path / "clean", newest_first=False), workers)
    newest = {400: _broken_platelets("p2", 1)}  # p2's newest platelets: it decides, so it must be read
    loud = export_of(tmp_path / "newest", newest_first=False, broken=newest)
    with pytest.raises(SourceError, match=r"Observation\.ndjson:401: ") as raised:
        report(loud, workers)
    assert "JSON" in str(raised.value) or "Expecting" in str(raised.value)


@pytest.mark.parametrize("workers", [1, 3])
def test_an_error_in_a_later_part_names_its_line_in_the_file(workers, small_parts, tmp_path):
    undated = obs(PLATELETS, 90, "10*9/L", ago=None, subject="p1", id="z")  # undated: parsed as read
    broken = compact(undated).replace(b'"status":"final",', b'"status":"final",,')
    folder = export_of(tmp_path / "export", newest_first=True, broken={700: broken})
    with pytest.raises(SourceError, match=r"Observation\.ndjson:701: ") as raised:
        report(folder, workers)
    assert str(raised.value).count("\n") == 0


def test_a_sign_of_the_disease_in_a_file_of_mixed_types_is_found_when_read_in_parts(small_parts, tmp_path):
    resources = candidate_resources()
    filler = [
        r for n in range(8) for r in (patient(id=f"q{n}"), *history(f"q{n}", range(1, 30), newest_first=True))
    ]
    lines = [compact(r) for r in filler + resources]  # the ALL Conditions near the end of one big file
    folder = write(tmp_path / "export", {"Everything.ndjson": lines})
    one = json.loads(report(folder, 1))
    assert [p["patient"] for p in one["patients"]] == ["Patient/p1"]
    assert json.loads(report(folder, 3)) == one


@pytest.mark.parametrize("all_patients", [False, True], ids=["default", "all-patients"])
def test_the_sample_in_parts_gives_the_same_bytes(all_patients, small_parts, tmp_path):
    folder = sample_export(tmp_path / "export")
    one = report(folder, 1, all_patients)
    assert report(folder, 3, all_patients) == one


def test_a_patients_results_keep_the_order_of_the_file(tmp_path):
    def valued(oid: str, ago: int | None) -> dict[str, Any]:
        """A result whose only criteria code is its answer: parsed, never read by a criterion."""
        result = obs(PLATELETS, None, None, ago=ago, subject="p1", id=oid)
        result["valueCodeableConcept"] = {"coding": [dict(zip(("system", "code"), PLATELETS, strict=True))]}
        result["code"] = {"text": "a note"}
        return result

    first, second = valued("first", 3), valued("second", None)  # dated (settled at the end), undated
    resources = [r for r in leukaemia() if r["resourceType"] != "Observation"] + [first, second]
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(compact(resource))
    folder = write(tmp_path / "export", {f"{t}.ndjson": lines for t, lines in by_type.items()})
    scan = export.Scan(definition(), AS_OF, frozenset({"p1"}))
    parts = export._parts(export.ndjson_files(folder), 1, None)
    (record,) = export._merge(parts, export._read(parts, scan, 1), scan)
    assert [o["id"] for o in record.resources["Observation"]] == ["first", "second"]
