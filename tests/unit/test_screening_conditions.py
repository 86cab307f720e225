"""Condition-based criteria: the diagnosis (inclusion-2, -3), CNS/testicular disease (exclusion-1),
other Condition exclusions and the other-malignancy look-back (exclusion-9)."""

from __future__ import annotations

import pytest

from tests.support.clinical import (
    ALL_ANY_LINEAGE,
    ALL_REFRACTORY,
    ALL_RELAPSE,
    ICD10CM,
    ICD_ALL_RELAPSE,
    ICDO3,
    ICDO3_B_ALL,
    ICDO3_T_ALL,
    MENINGEAL_LEUKAEMIA,
    SCT,
    T_ALL,
    TESTIS,
    born_years_ago,
    candidate_resources,
    condition,
    days_ago,
    evaluate,
    patient,
    screen,
)

# --- inclusion-2: relapsed/refractory T-ALL ------------------------------------------------------


def test_snomed_t_all_with_relapse_code_is_met():
    t_all, relapse = condition(T_ALL, id="dx"), condition(ALL_RELAPSE, id="rel")
    result = evaluate("inclusion-2", t_all, relapse)
    assert result.result == "met"
    assert result.evidence == ["Condition/dx", "Condition/rel"]


def test_t_all_with_refractory_code_is_met():
    assert evaluate("inclusion-2", condition(T_ALL), condition(ALL_REFRACTORY)).result == "met"


def test_icdo3_t_lymphoblastic_morphology_establishes_lineage():
    assert evaluate("inclusion-2", condition(ICDO3_T_ALL), condition(ALL_RELAPSE)).result == "met"


def test_icdo3_morphology_in_an_extension_establishes_lineage():
    dx = condition(ICD_ALL_RELAPSE)
    dx["extension"] = [
        {
            "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior",
            "valueCodeableConcept": {"coding": [{"system": ICDO3, "code": "9837/3"}]},
        }
    ]
    assert evaluate("inclusion-2", dx).result == "met"


def test_t_all_without_relapse_or_refractory_code_is_unknown():
    result = evaluate("inclusion-2", condition(T_ALL))
    assert result.result == "unknown"
    assert "no relapse or refractory code" in result.reason


def test_icd10cm_c91_02_alone_is_unknown_lineage():
    result = evaluate("inclusion-2", condition(ICD_ALL_RELAPSE))
    assert result.result == "unknown"
    assert "without lineage" in result.reason


def test_all_of_unstated_lineage_with_relapse_is_unknown():
    assert evaluate("inclusion-2", condition(ALL_ANY_LINEAGE), condition(ALL_RELAPSE)).result == "unknown"


def test_b_lineage_only_is_not_met():
    result = evaluate("inclusion-2", condition(ICDO3_B_ALL), condition(ALL_RELAPSE))
    assert result.result == "not-met"
    assert "B lineage" in result.reason


def test_t_lineage_record_beats_a_b_lineage_record():
    both = [condition(ICDO3_B_ALL), condition(T_ALL), condition(ALL_RELAPSE)]
    assert evaluate("inclusion-2", *both).result == "met"


def test_no_all_record_is_not_met_and_not_eligible():
    result = screen(patient(born_years_ago(10)))
    inclusion_2 = next(c for c in result.criteria if c.id == "inclusion-2")
    assert inclusion_2.result == "not-met"
    assert inclusion_2.reason == "no record of acute lymphoblastic leukaemia"
    assert result.status == "not-eligible"


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_diagnosis_is_ignored(verification):
    result = evaluate("inclusion-2", condition(T_ALL, verification=verification), condition(ALL_RELAPSE))
    assert result.result == "unknown"  # only the relapse code remains: lineage not established
    result = evaluate("inclusion-2", condition(T_ALL, verification=verification))
    assert result.result == "not-met"


def test_future_dated_diagnosis_is_ignored():
    future = [condition(code, onset=days_ago(-5)) for code in (T_ALL, ALL_RELAPSE)]
    assert evaluate("inclusion-2", *future).result == "not-met"


# --- inclusion-3: relapse coded (+ investigator judgement) ---------------------------------------


def test_relapse_coded_still_needs_review():
    result = evaluate("inclusion-3", condition(T_ALL), condition(ALL_RELAPSE))
    assert result.result == "unknown"
    assert "requires manual review" in result.reason


def test_no_relapse_code_is_unknown_for_inclusion_3():
    assert evaluate("inclusion-3", condition(T_ALL)).result == "unknown"


# --- exclusion-1: CNS or testicular involvement ---------------------------------------------------


def test_active_cns_leukaemia_is_met():
    result = evaluate("exclusion-1", condition(MENINGEAL_LEUKAEMIA, id="cns"))
    assert result.result == "met"
    assert result.evidence == ["Condition/cns"]


@pytest.mark.parametrize("status", ["resolved", "remission", "inactive"])
def test_resolved_cns_leukaemia_is_not_met(status):
    result = evaluate("exclusion-1", condition(MENINGEAL_LEUKAEMIA, clinical=status))
    assert result.result == "not-met"
    assert "not current" in result.reason


def test_cns_leukaemia_without_clinical_status_is_unknown():
    assert evaluate("exclusion-1", condition(MENINGEAL_LEUKAEMIA, clinical=None)).result == "unknown"


def test_cns_leukaemia_without_status_but_abated_is_not_met():
    cns = condition(MENINGEAL_LEUKAEMIA, clinical=None, abated=days_ago(60))
    assert evaluate("exclusion-1", cns).result == "not-met"


def test_testicular_involvement_via_body_site():
    assert evaluate("exclusion-1", condition(T_ALL, body_site=TESTIS)).result == "met"
    assert evaluate("exclusion-1", condition(ICD_ALL_RELAPSE, body_site=TESTIS)).result == "met"


def test_leukaemia_at_another_body_site_is_not_testicular():
    bone_marrow = (SCT, "14016003")
    assert evaluate("exclusion-1", condition(T_ALL, body_site=bone_marrow)).result == "not-met"
    assert (
        evaluate("exclusion-1", condition(T_ALL, body_site=TESTIS, clinical="resolved")).result == "not-met"
    )


def test_no_cns_or_testis_record_is_not_met():
    result = evaluate("exclusion-1", condition(T_ALL))
    assert result.result == "not-met"
    assert "no matching record" in result.reason


# --- exclusions 2-5 -------------------------------------------------------------------------------


def test_stroke_at_any_time_is_met():
    assert evaluate("exclusion-2", condition((ICD10CM, "I61.9"), clinical="resolved")).result == "met"


def test_seizure_disorder_needs_review():
    result = evaluate("exclusion-2", condition((ICD10CM, "G40.909")))
    assert result.result == "unknown"
    assert "needs review" in result.reason


def test_nyha_class_iv_condition_is_met_and_unstated_heart_failure_unknown():
    assert evaluate("exclusion-3", condition((SCT, "422293003"))).result == "met"
    assert evaluate("exclusion-3", condition((SCT, "84114007"))).result == "unknown"


def test_dic_current_is_met():
    assert evaluate("exclusion-4", condition((ICD10CM, "D65"))).result == "met"
    assert evaluate("exclusion-4", condition((ICD10CM, "D65"), clinical="resolved")).result == "not-met"


def test_autoimmune_disease_needs_severity_review():
    assert evaluate("exclusion-5", condition((SCT, "85828009"))).result == "unknown"


def test_refuted_exclusion_condition_is_ignored():
    assert evaluate("exclusion-4", condition((SCT, "67406007"), verification="refuted")).result == "not-met"


# --- exclusion-9: other malignancy within 3 years -------------------------------------------------

THREE_YEARS = "2023-11-23"  # as-of 2026-11-23 minus 3 years
THREE_YEARS_AND_A_DAY = "2023-11-22"
NEUROBLASTOMA = (ICD10CM, "C74.90")


def test_malignancy_with_onset_three_years_ago_to_the_day_is_met():
    cancer = condition(NEUROBLASTOMA, clinical="resolved", onset=THREE_YEARS, abated=THREE_YEARS)
    assert evaluate("exclusion-9", cancer).result == "met"


def test_malignancy_that_ended_three_years_and_a_day_ago_is_not_met():
    cancer = condition(
        NEUROBLASTOMA, clinical="resolved", onset=THREE_YEARS_AND_A_DAY, abated=THREE_YEARS_AND_A_DAY
    )
    result = evaluate("exclusion-9", cancer)
    assert result.result == "not-met"
    assert "not current or in the window" in result.reason


def test_old_malignancy_abated_within_three_years_is_met():
    cancer = condition(NEUROBLASTOMA, clinical="resolved", onset="2018-01-10", abated="2024-05-01")
    assert evaluate("exclusion-9", cancer).result == "met"


def test_old_malignancy_still_active_is_met():
    assert evaluate("exclusion-9", condition(NEUROBLASTOMA, onset="2015-01-01")).result == "met"


def test_resolved_malignancy_without_dates_is_unknown():
    assert evaluate("exclusion-9", condition(NEUROBLASTOMA, clinical="resolved")).result == "unknown"


def test_resolved_old_malignancy_without_abatement_is_unknown():
    cancer = condition(NEUROBLASTOMA, clinical="resolved", onset="2015-01-01")
    assert evaluate("exclusion-9", cancer).result == "unknown"


def test_malignancy_without_clinical_status_that_ended_long_ago_is_not_met():
    cancer = condition(NEUROBLASTOMA, clinical=None, onset="2012-01-01", abated="2018-01-01")
    assert evaluate("exclusion-9", cancer).result == "not-met"


@pytest.mark.parametrize("code", ["C91.00", "C91.01", "C91.02", "C83.50"])
def test_the_all_itself_is_not_another_malignancy(code):
    assert evaluate("exclusion-9", condition((ICD10CM, code), onset=days_ago(200))).result == "not-met"


def test_other_leukaemia_and_snomed_malignancy_count():
    assert evaluate("exclusion-9", condition((ICD10CM, "C92.00"))).result == "met"
    assert evaluate("exclusion-9", condition((SCT, "363346000"))).result == "met"


def test_benign_neoplasm_is_not_a_malignancy():
    assert evaluate("exclusion-9", condition((ICD10CM, "D36.9"))).result == "not-met"


def test_other_malignancy_makes_a_candidate_not_eligible():
    resources = [*candidate_resources(), condition(NEUROBLASTOMA, clinical="resolved", onset="2024-11-01")]
    assert screen(*resources).status == "not-eligible"
