"""Report formats: the JSON contract, one CSV row per patient and criterion, an HTML page for people."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

from adapter.screening.report import render
from adapter.screening.run import screen_files
from mappings.criteria import load_criteria

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "adapter" / "samples" / "nct06849401-sample-bundle.json"
DEFINITION = load_criteria(ROOT / "mappings" / "studies" / "NCT06849401" / "criteria.yaml")
REPORT = screen_files(SAMPLE, DEFINITION, date(2026, 11, 23))


def test_json_follows_the_contract():
    data = json.loads(render(REPORT, "json"))
    assert set(data) == {"study", "asOf", "summary", "patients"}
    assert data["study"] == "NCT06849401" and data["asOf"] == "2026-11-23"
    # issue 12 added `unmapped` (terminology gaps; `population` too on server screening)
    assert set(data["summary"]) == {"screened", "candidates", "notEligible", "unmapped"}
    first = data["patients"][0]
    assert set(first) == {"patient", "status", "criteria"} and len(first["criteria"]) == 33
    assert set(first["criteria"][0]) == {"id", "type", "result", "reason", "evidence"}


def test_csv_has_a_row_per_patient_and_criterion():
    rows = list(csv.DictReader(io.StringIO(render(REPORT, "csv"))))
    assert len(rows) == REPORT.summary.screened * 33
    assert {r["result"] for r in rows} <= {"met", "not-met", "unknown"}


def test_html_lists_candidates_first_and_names_the_always_manual_criteria_once():
    page = render(REPORT, "html")
    first_candidate = page.index("candidate-refractory-boy")
    first_excluded = page.index("excl-age-1")
    assert first_candidate < first_excluded
    assert "Always for the study team's judgement: inclusion-12, inclusion-13" in page
    assert "<script" not in page
