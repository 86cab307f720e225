"""Report formats: the JSON contract, one CSV row per patient and criterion, an HTML page for people."""

from __future__ import annotations

import csv
import io
import json
import re

from adapter.screening.report import ranked_candidates, render
from adapter.screening.resolve import collect_next
from adapter.screening.results import ScreeningReport
from tests.support.sample_report import REPORT


def test_json_follows_the_contract_with_new_fields_only():
    data = json.loads(render(REPORT, "json"))
    assert set(data) == {"study", "asOf", "summary", "patients", "criteria", "concepts"}
    assert data["study"] == "NCT06849401" and data["asOf"] == "2026-11-23"
    # issue 16 added `funnel`, issue 12 `unmapped` (terminology gaps; `population` too on server screening)
    assert set(data["summary"]) == {"screened", "candidates", "notEligible", "funnel", "unmapped"}
    first = data["patients"][0]
    assert set(first) == {"patient", "status", "criteria", "latestData"} and len(first["criteria"]) == 33
    assert set(first["criteria"][0]) == {"id", "type", "result", "reason", "evidence"}  # met: no resolve
    unknown = next(c for c in first["criteria"] if c["result"] == "unknown")
    assert set(unknown) == {"id", "type", "result", "reason", "evidence", "resolve"}
    # Older readers' model still reads it: every old field is where it was.
    assert ScreeningReport.model_validate(data).summary.screened == 26


def test_csv_has_a_row_per_patient_and_criterion():
    rows = list(csv.DictReader(io.StringIO(render(REPORT, "csv"))))
    assert len(rows) == REPORT.summary.screened * 33
    assert {r["result"] for r in rows} <= {"met", "not-met", "unknown"}


def test_html_lists_candidates_first_and_names_the_always_manual_criteria_once():
    page = render(REPORT, "html")
    first_candidate = page.index("candidate-refractory-boy")
    first_excluded = page.index("excl-age-1")
    assert first_candidate < first_excluded
    assert (
        "Always for the study team's judgement: inclusion-12 <span class='muted'>Informed consent</span>"
        in page
    )
    assert "<script" not in page and "http://" not in page.split("<body>")[0]  # no network in the head
    assert "<caption>" in page and "scope='col'" in page and "scope='row'" in page and "@media print" in page
    assert ":focus-visible" in page and "class='skip' href='#h-candidates'" in page  # keyboard users


def test_html_for_people_titles_rounded_numbers_next_steps():
    page = render(REPORT, "html")
    assert "Heart function (LVEF &gt;= 50%)" in page
    assert "{score}" not in page and "{grade}" not in page
    assert not re.search(r"\d\.\d{4,}", page)  # no six-digit ratios
    assert "platelets dated 2026-11-16 or later (latest 2026-11-13)" in page
    assert "How the population narrows" in page and "more candidates if" in page


def test_candidates_ranked_fewest_unknowns_first():
    ranked = [p.patient for p in ranked_candidates(REPORT)]
    assert ranked[0].startswith("Patient/candidate-") and ranked[-1] == "Patient/unknown-diagnosis-only"
    todo = [len(collect_next(p)) for p in ranked_candidates(REPORT)]
    assert todo == sorted(todo)


def test_funnel_text_table():
    text = render(REPORT, "funnel")
    assert text.startswith("26 screened, 11 candidates: 5 ready for review")
    assert re.search(r"exclusion-13\s+Platelets too low.*\s1\s+1\s+13\s", text)
    assert "  1. Patient/candidate-refractory-boy: collect next: nothing: ready for review" in text
    assert "Patient/unknown-stale-labs: collect next: total bilirubin dated 2026-11-16 or later" in text


HOSTILE = "<script>alert('x')</script>&\"'"


def test_every_value_from_the_data_is_escaped_and_unmapped_codes_get_a_section():
    data = json.loads(render(REPORT, "json"))
    data["patients"][0]["patient"] = f"Patient/{HOSTILE}"
    data["patients"][0]["criteria"][0]["reason"] = HOSTILE
    data["patients"][0]["criteria"][0]["evidence"] = [HOSTILE]
    data["criteria"][0]["title"] = HOSTILE
    data["summary"]["unmapped"] = [
        {
            "kind": "code",
            "system": "urn:local:lab",
            "code": "PLT-X",
            "text": HOSTILE,
            "resourceType": "Observation",
            "count": 7,
            "examples": ["Observation/o1", HOSTILE],
        },
        {
            "kind": "text",
            "text": "T-ALL relapse (free text)",
            "resourceType": "Condition",
            "count": 2,
            "examples": ["Condition/c9"],
        },
    ]
    page = render(ScreeningReport.model_validate(data), "html")
    assert "<script>" not in page and "alert('x')" not in page
    assert "&lt;script&gt;" in page
    assert "For the site&#x27;s terminologist" in page or "For the site's terminologist" in page
    assert "PLT-X" in page and "T-ALL relapse (free text)" in page
    assert "urn:local:lab" in page
    without = json.loads(render(REPORT, "json"))
    without["summary"].pop("unmapped", None)
    no_unmapped = render(ScreeningReport.model_validate(without), "html")
    assert "terminologist" not in no_unmapped


def test_json_bytes_are_the_standard_librarys_indented_json():
    """render() writes with pydantic's serializer for speed: the bytes must stay exactly those of
    json.dumps(indent=2, ensure_ascii=False), non-ASCII text and optional fields included."""
    data = REPORT.to_json_dict()
    data["patients"][0]["criteria"][0]["reason"] = "leucémie aiguë lymphoblastique — ≥ 5 %"
    report = ScreeningReport.model_validate(data)
    assert render(report, "json") == json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False) + "\n"
