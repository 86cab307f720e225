"""Medication, procedure and immunization criteria: GVHD treatment (exclusion-6), anticoagulants
(exclusion-7), systemic immunosuppression (exclusion-8, -14), CAR-T (exclusion-15) and recent
vaccination or surgery (exclusion-17)."""

from __future__ import annotations

import pytest

from tests.support.clinical import (
    CAR_T,
    GVHD,
    HEPARIN_ATC,
    INHALED_ROUTE,
    NCIT,
    ORAL_ROUTE,
    PREDNISONE,
    SCT,
    SURGICAL_PROCEDURE,
    TACROLIMUS,
    WARFARIN,
    candidate_resources,
    condition,
    evaluate,
    immunization,
    medication,
    procedure,
    screen,
)

# --- exclusion-6: active GVHD + systemic treatment ------------------------------------------------


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (ORAL_ROUTE, "met"),
        (INHALED_ROUTE, "not-met"),  # inhaled steroid is not systemic treatment
        (None, "unknown"),  # route missing: could be systemic
    ],
)
def test_gvhd_with_steroid_by_route(route, expected):
    result = evaluate("exclusion-6", condition(GVHD), medication(PREDNISONE, route=route))
    assert result.result == expected


def test_gvhd_without_treatment_is_not_met():
    result = evaluate("exclusion-6", condition(GVHD))
    assert result.result == "not-met"
    assert "systemic treatment: no matching record" in result.reason


def test_resolved_gvhd_with_steroid_is_not_met():
    assert evaluate("exclusion-6", condition(GVHD, clinical="resolved"), medication(PREDNISONE)).result == (
        "not-met"
    )


def test_gvhd_with_prednisone_makes_a_candidate_not_eligible():
    gvhd_id, med_id = "gvhd", "pred"
    result = screen(*candidate_resources(), condition(GVHD, id=gvhd_id), medication(PREDNISONE, id=med_id))
    exclusion_6 = next(c for c in result.criteria if c.id == "exclusion-6")
    assert exclusion_6.evidence == ["Condition/gvhd", "MedicationRequest/pred"]
    assert result.status == "not-eligible"


def test_gvhd_with_atc_immunosuppressant_statement():
    tacrolimus_atc = ("http://www.whocc.no/atc", "L04AD02")
    statement = medication(tacrolimus_atc, resource_type="MedicationStatement")
    assert evaluate("exclusion-6", condition(GVHD), statement).result == "met"


def test_medication_by_reference_to_a_contained_medication():
    request = medication(PREDNISONE)
    del request["medicationCodeableConcept"]
    request["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m",
            "code": {"coding": [{"system": PREDNISONE[0], "code": "8640"}]},
        }
    ]
    request["medicationReference"] = {"reference": "#m"}
    assert evaluate("exclusion-6", condition(GVHD), request).result == "met"


def test_medication_by_reference_to_a_medication_resource():
    drug = {
        "resourceType": "Medication",
        "id": "tac",
        "code": {"coding": [{"system": TACROLIMUS[0], "code": "42316"}]},
    }
    request = medication(TACROLIMUS)
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "Medication/tac"}
    assert evaluate("exclusion-6", drug, condition(GVHD), request).result == "met"


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "draft"])
def test_void_medication_records_are_ignored(status):
    assert evaluate("exclusion-6", condition(GVHD), medication(PREDNISONE, status=status)).result == "not-met"


def test_future_medication_is_ignored():
    assert evaluate("exclusion-6", condition(GVHD), medication(PREDNISONE, start_ago=-3)).result == "not-met"


# --- exclusion-7: anticoagulant / antiplatelet --------------------------------------------------


@pytest.mark.parametrize("drug", [WARFARIN, HEPARIN_ATC])
def test_current_anticoagulant_is_met(drug):
    assert evaluate("exclusion-7", medication(drug)).result == "met"


def test_stopped_anticoagulant_leaves_the_manual_part():
    result = evaluate("exclusion-7", medication(WARFARIN, status="stopped", end_ago=30))
    assert result.result == "unknown"
    assert "requires manual review" in result.reason


def test_gi_bleeding_is_met():
    assert evaluate("exclusion-7", condition((SCT, "74474003"))).result == "met"


# --- exclusion-8: current systemic immunosuppression (+ manual long-term need) ----------------------


def test_current_systemic_steroid_needs_review():
    result = evaluate("exclusion-8", medication(PREDNISONE))
    assert result.result == "unknown"
    assert "current systemic steroid or immunosuppressant on record" in result.reason


def test_inhaled_steroid_or_none_is_not_met():
    assert evaluate("exclusion-8", medication(PREDNISONE, route=INHALED_ROUTE)).result == "not-met"
    assert evaluate("exclusion-8").result == "not-met"


def test_completed_steroid_is_not_current():
    assert evaluate("exclusion-8", medication(PREDNISONE, status="completed", end_ago=40)).result == "not-met"


def test_active_status_with_end_date_passed_is_not_current():
    statement = medication(PREDNISONE, resource_type="MedicationStatement", end_ago=3)
    assert evaluate("exclusion-8", statement).result == "not-met"


# --- exclusion-14: immunosuppressant stopped within 14 days ----------------------------------------


@pytest.mark.parametrize(
    ("end_ago", "expected"),
    [(0, "met"), (14, "met"), (15, "not-met"), (60, "not-met")],
)
def test_immunosuppressant_stopped_days_ago(end_ago, expected):
    stopped = medication(TACROLIMUS, resource_type="MedicationStatement", status="stopped", end_ago=end_ago)
    assert evaluate("exclusion-14", stopped).result == expected


def test_stopped_request_uses_its_validity_period_end():
    assert evaluate("exclusion-14", medication(PREDNISONE, status="completed", end_ago=10)).result == "met"


def test_stopped_without_an_end_date_is_unknown():
    assert evaluate("exclusion-14", medication(TACROLIMUS, status="stopped")).result == "unknown"


def test_still_running_is_not_a_discontinuation():
    assert evaluate("exclusion-14", medication(TACROLIMUS)).result == "not-met"


def test_stopped_inhaled_steroid_is_ignored():
    inhaled = medication(PREDNISONE, route=INHALED_ROUTE, status="stopped", end_ago=5)
    assert evaluate("exclusion-14", inhaled).result == "not-met"


# --- exclusion-15: CAR-T or gene therapy at any time ------------------------------------------------


def test_prior_car_t_procedure_is_met():
    result = evaluate("exclusion-15", procedure(CAR_T, ago=400, id="cart"))
    assert result.result == "met"
    assert result.evidence == ["Procedure/cart"]


def test_car_t_coded_with_ncit_counts():
    assert evaluate("exclusion-15", procedure((NCIT, "C126102"), ago=None)).result == "met"


@pytest.mark.parametrize("status", ["not-done", "entered-in-error"])
def test_car_t_not_done_is_ignored(status):
    result = evaluate("exclusion-15", procedure(CAR_T, status=status))
    assert result.result == "not-met"
    assert result.reason == "no matching record"


def test_car_t_planned_in_the_future_is_not_prior():
    assert evaluate("exclusion-15", procedure(CAR_T, ago=-10)).result == "not-met"


def test_car_t_makes_a_candidate_not_eligible():
    assert screen(*candidate_resources(), procedure(CAR_T, ago=200)).status == "not-eligible"


# --- exclusion-17: vaccination or surgery within 28 days -------------------------------------------


@pytest.mark.parametrize(("ago", "expected"), [(0, "met"), (28, "met"), (29, "not-met"), (-1, "not-met")])
def test_vaccination_window(ago, expected):
    assert evaluate("exclusion-17", immunization(ago=ago)).result == expected


@pytest.mark.parametrize("status", ["not-done", "entered-in-error"])
def test_vaccination_not_done_is_ignored(status):
    assert evaluate("exclusion-17", immunization(ago=3, status=status)).result == "not-met"


def test_vaccination_without_date_is_unknown():
    assert evaluate("exclusion-17", immunization(ago=None)).result == "unknown"


@pytest.mark.parametrize(("ago", "expected"), [(28, "met"), (29, "not-met")])
def test_surgery_by_procedure_category(ago, expected):
    surgery = procedure(category=SURGICAL_PROCEDURE, ago=ago)
    assert evaluate("exclusion-17", surgery).result == expected


def test_surgery_not_done_is_ignored_and_undated_is_unknown():
    not_done = procedure(category=SURGICAL_PROCEDURE, ago=3, status="not-done")
    assert evaluate("exclusion-17", not_done).result == "not-met"
    assert evaluate("exclusion-17", procedure(category=SURGICAL_PROCEDURE, ago=None)).result == "unknown"


def test_non_surgical_procedure_is_not_surgery():
    bone_marrow_aspiration = procedure((SCT, "234326005"), ago=3)
    assert evaluate("exclusion-17", bone_marrow_aspiration).result == "not-met"


def test_no_vaccination_or_surgery_is_not_met():
    result = evaluate("exclusion-17")
    assert result.result == "not-met"
    assert "no matching record" in result.reason


def test_planned_car_t_procedure_is_not_prior_therapy():
    from tests.support.clinical import evaluate, procedure

    planned = procedure(("http://snomed.info/sct", "1156961008"), ago=1, status="preparation")
    assert evaluate("exclusion-15", planned).result == "not-met"
