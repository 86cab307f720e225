"""The bundled sample population: deterministic, valid FHIR R4, and screened as documented."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from functools import cache

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from adapter.samples.sample_population import AS_OF, NAMESPACE, SAMPLE_PATH, build_bundle, render
from adapter.screening.results import PatientResult
from mappings.clinical.record import RecordBuilder
from tests.support.clinical import screener

# Patient id -> (status, the criteria that make the patient not eligible).
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "candidate-relapsed-girl": ("candidate", []),
    "candidate-refractory-boy": ("candidate", []),
    "candidate-relapsed-teen-boy": ("candidate", []),
    "candidate-toddler-girl": ("candidate", []),
    "candidate-relapsed-teen-girl": ("candidate", []),
    "excl-age-19": ("not-eligible", ["inclusion-1"]),
    "excl-age-1": ("not-eligible", ["inclusion-1"]),
    "excl-b-all": ("not-eligible", ["inclusion-2"]),
    "excl-cd7-78": ("not-eligible", ["inclusion-5"]),
    "excl-creatinine-umol": ("not-eligible", ["inclusion-10"]),
    "excl-cns": ("not-eligible", ["exclusion-1"]),
    "excl-prior-car-t": ("not-eligible", ["exclusion-15"]),
    "excl-vaccinated": ("not-eligible", ["exclusion-17"]),
    "excl-pregnant": ("not-eligible", ["inclusion-11", "exclusion-19"]),
    "excl-deceased": ("not-eligible", ["inclusion-6"]),
    "excl-platelets-8": ("not-eligible", ["exclusion-13"]),
    "excl-other-malignancy": ("not-eligible", ["exclusion-9"]),
    "excl-gvhd-prednisone": ("not-eligible", ["exclusion-6"]),
    "excl-bilirubin-high": ("not-eligible", ["inclusion-10"]),
    "excl-no-all": ("not-eligible", ["inclusion-2"]),
    "unknown-icd10-only": ("candidate", []),
    "unknown-stale-labs": ("candidate", []),
    "unknown-no-birth-date": ("candidate", []),
    "unknown-supplemental-oxygen": ("candidate", []),
    "unknown-diagnosis-only": ("candidate", []),
    "unknown-seizure-disorder": ("candidate", []),
}

# Criteria a record leaves unknown for want of data (beyond the always-manual parts).
EXPECTED_UNKNOWN = {
    "unknown-icd10-only": "inclusion-2",
    "unknown-stale-labs": "inclusion-10",
    "unknown-no-birth-date": "inclusion-1",
    "unknown-supplemental-oxygen": "inclusion-9",
    "unknown-diagnosis-only": "inclusion-5",
    "unknown-seizure-disorder": "exclusion-2",
}

COMPUTABLE_FULL = (
    "inclusion-1",
    "inclusion-2",
    "inclusion-5",
    "inclusion-7",
    "inclusion-8",
    "inclusion-9",
    "inclusion-10",
)


@cache
def committed() -> dict:
    return json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))


@cache
def screened() -> dict[str, PatientResult]:
    builder = RecordBuilder()
    for entry in committed()["entry"]:
        builder.add(entry["resource"], full_url=entry["fullUrl"])
    as_of = date.fromisoformat(committed()["timestamp"][:10])
    return {record.patient["id"]: screener(as_of).screen(record) for record in builder.records()}


def results_of(pid: str) -> dict[str, str]:
    return {c.id: c.result for c in screened()[pid].criteria}


def resources() -> list[dict]:
    return [entry["resource"] for entry in committed()["entry"]]


# --- determinism ----------------------------------------------------------------------------------


def test_builder_output_equals_the_committed_file():
    assert render(build_bundle()) == SAMPLE_PATH.read_text(encoding="utf-8"), (
        "regenerate with: python -m adapter.samples.sample_population"
    )


def test_builder_is_deterministic():
    assert build_bundle() == build_bundle()


# --- FHIR validity and bundle shape ---------------------------------------------------------------


def test_bundle_validates_as_r4_collection():
    bundle = Bundle.model_validate(committed())
    assert bundle.type == "collection"


@pytest.mark.parametrize("entry", committed()["entry"], ids=lambda e: e["fullUrl"][-12:])
def test_every_resource_validates(entry):
    resource = entry["resource"]
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert model.id == resource["id"]


def test_as_of_date_is_recorded():
    bundle = committed()
    assert AS_OF.isoformat() == "2026-11-23"
    assert bundle["timestamp"].startswith("2026-11-23")
    assert any(tag["code"] == "as-of-2026-11-23" for tag in bundle["meta"]["tag"])


def test_full_urls_are_uuid5_of_the_resource_key_and_unique():
    keys, urls = set(), set()
    for entry in committed()["entry"]:
        resource = entry["resource"]
        key = f"{resource['resourceType']}/{resource['id']}"
        assert entry["fullUrl"] == f"urn:uuid:{uuid.uuid5(NAMESPACE, key)}"
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", resource["id"])
        keys.add(key)
        urls.add(entry["fullUrl"])
    assert len(keys) == len(urls) == len(committed()["entry"])


def test_every_reference_points_at_a_patient_in_the_bundle():
    patients = {f"Patient/{r['id']}" for r in resources() if r["resourceType"] == "Patient"}
    for resource in resources():
        if resource["resourceType"] == "Patient":
            continue
        subject = resource.get("subject") or resource.get("patient")
        assert subject["reference"] in patients, resource["id"]


def test_patients_are_fictional_and_tagged_synthetic():
    patients = [r for r in resources() if r["resourceType"] == "Patient"]
    assert len(patients) == len(EXPECTED)
    for patient in patients:
        assert patient["name"][0]["family"].endswith("-Sample")
        assert {"code": "synthetic"}.items() <= patient["meta"]["tag"][0].items()


def test_noise_is_present():
    statuses = {r.get("status") for r in resources() if r["resourceType"] == "Observation"}
    assert "entered-in-error" in statuses
    verification = {
        c["verificationStatus"]["coding"][0]["code"] for c in resources() if c["resourceType"] == "Condition"
    }
    assert "refuted" in verification
    observations = [r for r in resources() if r["resourceType"] == "Observation"]
    assert any(r["effectiveDateTime"][:10] > AS_OF.isoformat() for r in observations)
    categories = {
        r["category"][0]["coding"][0]["code"] for r in resources() if r["resourceType"] == "Observation"
    }
    assert "vital-signs" in categories


# --- screening ------------------------------------------------------------------------------------


def test_the_bundle_holds_exactly_the_expected_patients():
    assert set(screened()) == set(EXPECTED)


@pytest.mark.parametrize("pid", list(EXPECTED))
def test_expected_status_and_deciding_criteria(pid):
    status, deciding = EXPECTED[pid]
    result = screened()[pid]
    assert result.status == status
    assert [c.id for c in result.deciding_criteria()] == deciding


@pytest.mark.parametrize("pid", [p for p in EXPECTED if p.startswith("candidate-")])
def test_full_candidates_have_every_fully_computable_inclusion_met(pid):
    assert [cid for cid in COMPUTABLE_FULL if results_of(pid)[cid] != "met"] == []


@pytest.mark.parametrize(("pid", "criterion"), list(EXPECTED_UNKNOWN.items()))
def test_unknown_heavy_patients_stay_candidates_with_the_gap_unknown(pid, criterion):
    result = screened()[pid]
    assert result.status == "candidate"
    assert results_of(pid)[criterion] == "unknown"


def test_noise_does_not_change_the_outcome():
    # candidate-relapsed-girl has an entered-in-error creatinine of 4.2 mg/dL, the newest result.
    girl = {c.id: c for c in screened()["candidate-relapsed-girl"].criteria}
    assert girl["inclusion-10"].result == "met"
    assert "Observation/candidate-relapsed-girl-creatinine-error" not in girl["inclusion-10"].evidence
    # candidate-refractory-boy has a refuted meningeal leukaemia.
    assert results_of("candidate-refractory-boy")["exclusion-1"] == "not-met"
    # candidate-toddler-girl has a platelet count of 4 dated after the as-of date.
    assert results_of("candidate-toddler-girl")["exclusion-13"] == "not-met"
