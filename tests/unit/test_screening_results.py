"""The shape of a patient result, the overall status, evidence references, the "missing data never
excludes" property and how RecordBuilder groups resources by patient."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.screening.results import PatientResult, ScreeningReport
from mappings.clinical.record import RecordBuilder, normalise_reference
from tests.support.clinical import (
    ALL_CRITERION_IDS,
    AS_OF,
    CD7_LOCAL,
    CREATININE_MASS,
    T_ALL,
    born_years_ago,
    candidate_resources,
    condition,
    definition,
    obs,
    patient,
    screen,
    t_all_relapsed,
)


def resource_refs(resources) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


# --- the definition -----------------------------------------------------------------------------


def test_definition_has_13_inclusion_and_20_exclusion_criteria():
    ids = [c.id for c in definition().criteria]
    assert ids == ALL_CRITERION_IDS


# --- every result lists every criterion ---------------------------------------------------------


@pytest.mark.parametrize(
    "resources",
    [
        [],
        [patient(None, None)],
        candidate_resources(),
        [patient(born_years_ago(30), "male", deceased=True)],
    ],
    ids=["nothing", "bare-patient", "candidate", "deceased-adult"],
)
def test_all_33_criteria_in_order_each_with_a_reason(resources):
    result = screen(*resources)
    assert [c.id for c in result.criteria] == ALL_CRITERION_IDS
    assert [c.type for c in result.criteria] == ["inclusion"] * 13 + ["exclusion"] * 20
    for criterion in result.criteria:
        assert criterion.result in ("met", "not-met", "unknown")
        assert criterion.reason.strip(), criterion.id


def test_manual_criteria_are_unknown_with_the_manual_review_reason():
    result = screen(*candidate_resources())
    manual = [c for c in definition().criteria if c.computable == "none"]
    assert {c.id for c in manual} == {
        "inclusion-12",
        "inclusion-13",
        "exclusion-11",
        "exclusion-12",
        "exclusion-16",
        "exclusion-18",
        "exclusion-20",
    }
    for criterion in manual:
        outcome = next(c for c in result.criteria if c.id == criterion.id)
        assert outcome.result == "unknown"
        assert outcome.reason == "requires manual review"
        assert outcome.evidence == []


def test_evidence_points_at_the_resources_used():
    resources = candidate_resources()
    result = screen(*resources)
    known = resource_refs(resources)
    cited = {ref for c in result.criteria for ref in c.evidence}
    assert cited <= known
    by_id = {c.id: c for c in result.criteria}
    assert by_id["inclusion-1"].evidence == ["Patient/p1"]
    cd7 = next(r for r in resources if r.get("code", {}).get("coding", [{}])[0].get("code") == CD7_LOCAL[1])
    assert by_id["inclusion-5"].evidence == [f"Observation/{cd7['id']}"]
    assert len(by_id["inclusion-10"].evidence) == 4
    assert by_id["exclusion-4"].evidence == []  # nothing on record, nothing cited


def test_the_full_candidate_is_a_candidate_and_every_computable_part_is_decided():
    result = screen(*candidate_resources())
    assert result.status == "candidate"
    by_id = {c.id: c.result for c in result.criteria}
    for met in (
        "inclusion-1",
        "inclusion-2",
        "inclusion-5",
        "inclusion-7",
        "inclusion-8",
        "inclusion-9",
        "inclusion-10",
    ):
        assert by_id[met] == "met", met
    for excluded in (
        "exclusion-1",
        "exclusion-3",
        "exclusion-6",
        "exclusion-9",
        "exclusion-10",
        "exclusion-13",
    ):
        assert by_id[excluded] == "not-met", excluded
    assert result.deciding_criteria() == []


def test_one_failed_inclusion_makes_the_patient_not_eligible_and_is_the_deciding_criterion():
    resources = [*candidate_resources(), obs(CD7_LOCAL, 78, "%", ago=0)]
    result = screen(*resources)
    assert result.status == "not-eligible"
    assert [c.id for c in result.deciding_criteria()] == ["inclusion-5"]


def test_one_met_exclusion_makes_the_patient_not_eligible():
    resources = [*candidate_resources(), obs(CREATININE_MASS, 2.0, "mg/dL", ago=0)]
    assert [c.id for c in screen(*resources).deciding_criteria()] == ["inclusion-10"]


def test_unknown_never_decides_the_status():
    result = screen(*candidate_resources())
    assert result.unknown_criteria()  # manual criteria are always unknown
    assert result.status == "candidate"


def test_report_counts_and_json_contract():
    results = [screen(*candidate_resources()), screen(patient(born_years_ago(30)))]
    report = ScreeningReport.build("NCT06849401", AS_OF, results).to_json_dict()
    assert report["asOf"] == "2026-11-23"
    summary = report["summary"]
    assert {k: summary[k] for k in ("screened", "candidates", "notEligible")} == {
        "screened": 2,
        "candidates": 1,
        "notEligible": 1,
    }
    assert set(summary) == {"screened", "candidates", "notEligible", "funnel"}  # new fields only
    assert report["patients"][0]["criteria"][0] == {
        "id": "inclusion-1",
        "type": "inclusion",
        "result": "met",
        "reason": "age 12 years on 2026-11-23",
        "evidence": ["Patient/p1"],
    }
    assert PatientResult.model_validate(report["patients"][1]).status == "not-eligible"


# --- missing data never excludes ----------------------------------------------------------------


def test_diagnosis_and_age_alone_make_a_candidate():
    result = screen(patient(born_years_ago(9), "male"), *t_all_relapsed())
    assert result.status == "candidate"
    assert result.deciding_criteria() == []
    by_id = {c.id: c.result for c in result.criteria}
    assert by_id["inclusion-1"] == by_id["inclusion-2"] == "met"
    assert by_id["inclusion-5"] == by_id["inclusion-10"] == by_id["exclusion-13"] == "unknown"


def test_no_sex_and_no_birth_date_still_a_candidate():
    result = screen(patient(None, None), *t_all_relapsed())
    assert result.status == "candidate"


CLINICAL_DATA = candidate_resources()[3:]  # everything but the Patient and the two diagnosis Conditions


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(range(len(CLINICAL_DATA))), unique=True))
def test_removing_any_data_from_a_candidate_keeps_a_candidate(kept):
    resources = candidate_resources()[:3] + [CLINICAL_DATA[i] for i in sorted(kept)]
    assert screen(*resources).status == "candidate"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(range(len(CLINICAL_DATA))), unique=True))
def test_removing_data_only_turns_results_unknown(kept):
    """Dropping records may turn a decided result unknown but never flips met <-> not-met."""
    full = {c.id: c.result for c in screen(*candidate_resources()).criteria}
    resources = candidate_resources()[:3] + [CLINICAL_DATA[i] for i in sorted(kept)]
    for criterion in screen(*resources).criteria:
        assert criterion.result in (full[criterion.id], "unknown"), criterion.id


# --- as-of date -----------------------------------------------------------------------------------


def test_results_depend_on_the_as_of_date():
    later = screen(*candidate_resources(), as_of=date(2027, 3, 1))
    assert {c.id: c.result for c in later.criteria}["inclusion-10"] == "unknown"  # labs now stale
    assert later.status == "candidate"


def _builder(resources) -> RecordBuilder:
    builder = RecordBuilder()
    for resource in resources:
        builder.add(resource)
    return builder


# --- RecordBuilder ------------------------------------------------------------------------------


def test_records_group_resources_by_patient():
    builder = _builder(
        [
            patient(id="a"),
            patient(id="b"),
            condition(T_ALL, subject="a"),
            obs(CD7_LOCAL, 90, "%", subject="b"),
            obs(CD7_LOCAL, 91, "%", subject="b"),
            obs(CD7_LOCAL, 92, "%", subject="nobody"),
        ]
    )
    records = {r.key: r for r in builder.records()}
    assert set(records) == {"Patient/a", "Patient/b"}
    assert records["Patient/a"].count() == 1
    assert len(records["Patient/b"].of_type("Observation")) == 2


def test_bundle_full_urls_resolve_even_when_the_patient_comes_last():
    builder = RecordBuilder()
    lab = obs(CD7_LOCAL, 90, "%")
    lab["subject"] = {"reference": "urn:uuid:0b7e1f8e-0000-4000-8000-000000000001"}
    builder.add(lab, full_url="urn:uuid:0b7e1f8e-0000-4000-8000-000000000002")
    builder.add(patient(id="kid"), full_url="urn:uuid:0b7e1f8e-0000-4000-8000-000000000001")
    [record] = list(builder.records())
    assert record.key == "Patient/kid"
    assert record.of_type("Observation") == [lab]


def test_absolute_and_versioned_references_are_normalised():
    assert normalise_reference("https://fhir.example.org/fhir/Patient/p1") == "Patient/p1"
    assert normalise_reference("Patient/p1/_history/3") == "Patient/p1"
    assert normalise_reference("urn:uuid:abc") == "urn:uuid:abc"
    assert normalise_reference(None) is None


def test_screening_reads_an_absolute_subject_reference():
    lab = obs(CD7_LOCAL, 95, "%")
    lab["subject"] = {"reference": "https://fhir.example.org/fhir/Patient/p1"}
    result = screen(lab)
    assert next(c for c in result.criteria if c.id == "inclusion-5").result == "met"
