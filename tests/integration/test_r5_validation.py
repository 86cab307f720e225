"""`trial-adapter map --fhir-version 5.0` output validates against the official R5 definitions with
HAPI FHIR's instance validator, offline (tools/r5-validator: hapi-fhir-validation-resources-r5 8.8.0):
0 errors. The R5 shape of the ResearchSubject that flagging writes is validated the same way."""

from __future__ import annotations

import json
from pathlib import Path

from adapter.cli import main
from mappings.r5 import research_subject_r5
from tests.support.java_tools import validate_r5


def test_map_r5_output_has_no_errors_against_r5_definitions(tmp_path: Path):
    out = tmp_path / "r5"
    assert main(["map", "--out", str(out), "--fhir-version", "5.0"]) == 0
    subject = research_subject_r5(
        {
            "resourceType": "ResearchSubject",
            "identifier": [{"system": "http://trial-adapter.org/fhir/sid/research-subject", "value": "N/p1"}],
            "status": "candidate",
            "study": {"reference": "ResearchStudy/NCT06849401"},
            "individual": {"reference": "Patient/p1"},
        }
    )
    (out / "ResearchSubject-candidate.json").write_text(json.dumps(subject), encoding="utf-8")
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    code, issues = validate_r5(files)
    errors = [i for i in issues if i[0] in ("error", "fatal")]
    assert errors == [] and code == 0


def test_the_validator_does_find_r5_errors(tmp_path: Path):
    # The same check fails on an R4-shaped ResearchStudy (R4 status codes, enrollment): it is not vacuous.
    bad = tmp_path / "ResearchStudy-r4.json"
    bad.write_text(
        json.dumps(
            {"resourceType": "ResearchStudy", "status": "approved", "enrollment": [{"reference": "Group/x"}]}
        ),
        encoding="utf-8",
    )
    code, issues = validate_r5([bad])
    assert code == 1
    assert any(i[0] == "error" for i in issues)
