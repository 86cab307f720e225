"""adapter/fhir: FHIR JSON parsing, model problems, OperationOutcome, transactions (each once)."""

from __future__ import annotations

import ast
import json
import uuid
from pathlib import Path

import pytest

from adapter.fhir.outcome import operation_outcome, outcome_response
from adapter.fhir.parsing import InvalidJson, fhir_problem, model_problem, parse_fhir_json, unresolved_urn
from adapter.fhir.search import references
from adapter.fhir.transaction import (
    conditional_url,
    full_url,
    identifier_condition,
    if_match,
    rewrite_references,
    search_matches,
    transaction_bundle,
    uuid_urn,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("data", "positions", "message"),
    [
        (b'{"a": 1', True, "invalid JSON at line 1 column 8: Expecting ',' delimiter"),
        (b'{"a": 1', False, "invalid JSON: Expecting ',' delimiter"),
        (b'{"a": NaN}', True, "invalid FHIR JSON: NaN is not a number FHIR JSON allows"),
        (b'{"a": 1e999}', True, "invalid FHIR JSON: number 1e999 is out of range"),
        (b'{"a": "\xff"}', True, "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, True, "JSON nested too deeply"),
    ],
)
def test_parse_fhir_json_names_the_problem(data: bytes, positions: bool, message: str) -> None:
    with pytest.raises(InvalidJson) as raised:
        parse_fhir_json(data, positions=positions)
    assert str(raised.value) == message


def test_model_problems_name_the_element() -> None:
    assert fhir_problem({"resourceType": "Observation", "code": {"text": "x"}}) == (
        "Observation.status: Value for the field 'status' is required."
    )
    assert fhir_problem({"resourceType": "Nope"}) == "unknown resource type 'Nope'"
    assert fhir_problem({"resourceType": "Nope"}, validate=False) == "unknown resource type 'Nope'"
    assert fhir_problem({"resourceType": "Patient", "gender": 3}, validate=False) is None
    problem = model_problem({"resourceType": "Patient", "gender": 3})
    assert problem is not None and problem.path == "gender" and str(problem).startswith("Patient.gender: ")


def test_unresolved_urn() -> None:
    resource = {"subject": {"reference": "urn:uuid:a"}, "x": [{"reference": "Patient/1"}]}
    assert unresolved_urn(resource, {"urn:uuid:a"}) is None
    assert unresolved_urn(resource, frozenset()) == "urn:uuid:a"


def test_operation_outcome_body_and_response() -> None:
    assert operation_outcome("invalid", "bad", expression="Bundle.entry[0]") == {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invalid", "diagnostics": "bad", "expression": ["Bundle.entry[0]"]}
        ],
    }
    response = outcome_response(202, "informational", "queued", severity="information")
    assert response.status_code == 202 and response.media_type == "application/fhir+json"
    assert json.loads(response.body)["issue"][0]["severity"] == "information"


def test_urns_conditions_and_if_match() -> None:
    assert uuid_urn("s", "v") == f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 's|v')}"
    assert identifier_condition("http://x|y", "a,b") == "identifier=http%3A%2F%2Fx%5C%7Cy%7Ca%5C%2Cb"
    assert if_match({"method": "PUT"}, {"meta": {"versionId": "3"}}) == {"method": "PUT", "ifMatch": 'W/"3"'}
    assert if_match({"method": "PUT"}, {}) == {"method": "PUT"}
    assert references("Patient", ["a,b", "c"]) == "Patient/a\\,b,Patient/c"  # data never splits a search
    found = {"entry": [{"resource": {"id": "1"}}, {"resource": {"id": "2"}, "search": {"mode": "include"}}]}
    assert search_matches(found) == [{"id": "1"}]


def test_transaction_bundle_rewrites_references_to_entry_urns() -> None:
    org = {
        "resourceType": "Organization",
        "id": "o",
        "identifier": [{"system": "s", "value": "o"}],
        "name": "O",
    }
    study = {
        "resourceType": "ResearchStudy",
        "id": "r",
        "identifier": [{"system": "s", "value": "r"}],
        "status": "active",
        "sponsor": {"reference": "Organization/o"},
    }
    bundle = transaction_bundle([org, study])
    entries = bundle["entry"]
    assert [e["request"] for e in entries] == [
        {"method": "PUT", "url": conditional_url(org)},
        {"method": "PUT", "url": conditional_url(study)},
    ]
    assert entries[1]["resource"]["sponsor"] == {"reference": full_url(org)}
    assert "id" not in entries[0]["resource"]
    assert rewrite_references(entries[1]["resource"], {full_url(org): "Organization/9"})["sponsor"] == {
        "reference": "Organization/9"
    }


def test_mappings_import_nothing_from_adapter() -> None:
    """The definitions sit below the adapter: no module under mappings/ imports adapter."""
    offenders = []
    for path in sorted((ROOT / "mappings").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "adapter"]
    assert offenders == []
