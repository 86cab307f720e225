"""Observation-based criteria: thresholds, units, reference ranges, windows and result hygiene."""

from __future__ import annotations

import pytest

from tests.support.clinical import (
    ALT,
    AST,
    BILIRUBIN_MASS,
    BILIRUBIN_MOLES,
    BM_BLASTS,
    CD7_LOCAL,
    CD7_LOINC,
    CREATININE_MASS,
    CREATININE_MOLES,
    DYSPNEA_GRADE,
    ECOG,
    HBV_DNA,
    HCG,
    HCV_RNA,
    HIV,
    ICD10CM,
    KARNOFSKY,
    LANSKY,
    LOINC,
    LVEF,
    NEGATIVE,
    O2_CONCENTRATION,
    O2_FLOW,
    PLATELETS,
    POSITIVE,
    PREGNANT,
    SPO2,
    SYPHILIS,
    born_years_ago,
    candidate_resources,
    component,
    condition,
    days_ago,
    evaluate,
    obs,
    patient,
    reference_range,
    result_of,
    screen,
)

BILIRUBIN_UMOL_PER_MG_DL = 10_000 / 584.66  # 1 mg/dL in umol/L with the molar mass in criteria.yaml
CREATININE_UMOL_PER_MG_DL = 10_000 / 113.12


def clause_result(criterion: str, label: str, *resources) -> str:
    """The reason fragment of one clause of a combined criterion, e.g. 'AST 10 U/L ...'."""
    reason = evaluate(criterion, *resources).reason
    return next(part for part in reason.split("; ") if part.startswith(label))


# --- inclusion-5: CD7-positive blasts > 80% -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(80, "not-met"), (80.1, "met"), (79, "not-met"), (100, "met")],
)
def test_cd7_strictly_above_80(value, expected):
    assert evaluate("inclusion-5", obs(CD7_LOCAL, value, "%")).result == expected


def test_cd7_loinc_code_counts_too():
    assert evaluate("inclusion-5", obs(CD7_LOINC, 92, "%")).result == "met"
    assert evaluate("inclusion-5", obs(CD7_LOINC, 80, "%")).result == "not-met"


@pytest.mark.parametrize(
    ("comparator", "value", "expected"),
    [
        (">", 80, "met"),  # '>80': above 80, so strictly above the threshold
        (">=", 80, "unknown"),  # could be exactly 80
        (">", 79, "unknown"),  # could be 79.5
        (">", 85, "met"),
        ("<", 80, "not-met"),
        ("<=", 80, "not-met"),
        ("<", 90, "unknown"),
    ],
)
def test_cd7_comparator_quantities(comparator, value, expected):
    assert evaluate("inclusion-5", obs(CD7_LOCAL, value, "%", comparator=comparator)).result == expected


def test_cd7_as_a_fraction_converts_to_percent():
    assert evaluate("inclusion-5", obs(CD7_LOCAL, 0.85, "1")).result == "met"


def test_cd7_window_is_90_days():
    assert evaluate("inclusion-5", obs(CD7_LOCAL, 95, "%", ago=90)).result == "met"
    result = evaluate("inclusion-5", obs(CD7_LOCAL, 95, "%", ago=91))
    assert result.result == "unknown"
    assert "91 days old" in result.reason


def test_no_cd7_result_is_unknown():
    result = evaluate("inclusion-5")
    assert result.result == "unknown"
    assert result.reason == "no CD7-positive blasts result"


# --- inclusion-4: bone marrow blasts >= 5% -------------------------------------------------------


def test_bone_marrow_blasts_threshold_still_needs_review():
    assert evaluate("inclusion-4", obs(BM_BLASTS, 4.9, "%")).result == "not-met"
    result = evaluate("inclusion-4", obs(BM_BLASTS, 5, "%"))
    assert result.result == "unknown"  # >= 5% met, the salvage cycle needs review
    assert "bone marrow blasts 5 %" in result.reason


# --- inclusion-7: ECOG <= 1 or KPS > 60 (Kleene OR) -----------------------------------------------


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([obs(ECOG, 1, "{score}")], "met"),
        ([obs(ECOG, 2, "{score}")], "unknown"),  # ECOG fails, KPS missing
        ([obs(ECOG, 2, "{score}"), obs(KARNOFSKY, 70, "{score}")], "met"),
        ([obs(ECOG, 2, "{score}"), obs(KARNOFSKY, 60, "{score}")], "not-met"),
        ([obs(KARNOFSKY, 60, "{score}")], "unknown"),  # KPS fails, ECOG missing
        ([obs(LANSKY, 80, "{score}")], "met"),
        ([obs(ECOG, 1)], "met"),  # valueInteger, no unit
        ([], "unknown"),
    ],
)
def test_performance_status_kleene_or(resources, expected):
    assert evaluate("inclusion-7", *resources).result == expected


def test_performance_status_most_recent_wins():
    older_good, newer_bad = obs(ECOG, 0, "{score}", ago=10), obs(ECOG, 3, "{score}", ago=2)
    assert evaluate("inclusion-7", older_good, newer_bad, obs(KARNOFSKY, 50, "{score}")).result == "not-met"


# --- inclusion-8: LVEF >= 50% ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(49.9, "not-met"), (50, "met"), (65, "met")])
def test_lvef_boundary(value, expected):
    assert evaluate("inclusion-8", obs(LVEF, value, "%", ago=20)).result == expected


def test_lvef_older_than_30_days_is_unknown():
    assert evaluate("inclusion-8", obs(LVEF, 60, "%", ago=31)).result == "unknown"


# --- inclusion-9: dyspnea grade <= 1 and SpO2 >= 95% on room air ---------------------------------

DYSPNEA_0 = obs(DYSPNEA_GRADE, 0, "{grade}")


@pytest.mark.parametrize(("value", "expected"), [(94, "not-met"), (95, "met"), (99, "met")])
def test_spo2_boundary(value, expected):
    assert evaluate("inclusion-9", DYSPNEA_0, obs(SPO2, value, "%")).result == expected


@pytest.mark.parametrize(
    ("oxygen", "expected"),
    [
        (component(O2_FLOW, 2, "L/min"), "unknown"),
        (component(O2_FLOW, 0, "L/min"), "met"),
        (component(O2_CONCENTRATION, 40, "%"), "unknown"),
        (component(O2_CONCENTRATION, 21, "%"), "met"),
    ],
)
def test_spo2_on_supplemental_oxygen_is_not_a_room_air_value(oxygen, expected):
    result = evaluate("inclusion-9", DYSPNEA_0, obs(SPO2, 98, "%", components=[oxygen]))
    assert result.result == expected
    if expected == "unknown":
        assert "supplemental oxygen" in result.reason


def test_spo2_with_unreadable_oxygen_component_is_unknown():
    oxygen = {"code": {"coding": [{"system": LOINC, "code": "3151-8"}]}, "valueString": "nasal cannula"}
    assert evaluate("inclusion-9", DYSPNEA_0, obs(SPO2, 98, "%", components=[oxygen])).result == "unknown"


def test_spo2_window_is_7_days():
    assert evaluate("inclusion-9", DYSPNEA_0, obs(SPO2, 98, "%", ago=7)).result == "met"
    assert evaluate("inclusion-9", DYSPNEA_0, obs(SPO2, 98, "%", ago=8)).result == "unknown"


def test_dyspnea_grade_2_fails_the_and():
    assert evaluate("inclusion-9", obs(DYSPNEA_GRADE, 2, "{grade}"), obs(SPO2, 98, "%")).result == "not-met"


def test_and_with_one_not_met_clause_is_not_met_even_if_the_other_is_unknown():
    # SpO2 94% fails; dyspnea grade is missing (unknown): Kleene AND gives not-met.
    assert evaluate("inclusion-9", obs(SPO2, 94, "%")).result == "not-met"


# --- inclusion-10: liver and renal function --------------------------------------------------------


def good_labs(**overrides) -> list[dict]:
    """The four inclusion-10 labs, all well inside their limits; override one by name."""
    labs = {
        "bilirubin": obs(BILIRUBIN_MASS, 0.5, "mg/dL", uln=1.2),
        "ast": obs(AST, 30, "U/L", uln=40),
        "alt": obs(ALT, 30, "U/L", uln=40),
        "creatinine": obs(CREATININE_MASS, 0.5, "mg/dL"),
    }
    labs.update(overrides)
    return list(labs.values())


def test_all_four_labs_in_range_is_met():
    result = evaluate("inclusion-10", *good_labs())
    assert result.result == "met"
    assert len(result.evidence) == 4


@pytest.mark.parametrize(("value", "expected"), [(3.6, "met"), (3.61, "not-met")])
def test_bilirubin_three_times_uln(value, expected):
    labs = good_labs(bilirubin=obs(BILIRUBIN_MASS, value, "mg/dL", uln=1.2))
    assert evaluate("inclusion-10", *labs).result == expected


@pytest.mark.parametrize(("factor", "expected"), [(1.0, "met"), (1.001, "not-met")])
def test_bilirubin_in_umol_per_l_with_uln_in_mg_per_dl(factor, expected):
    value = 3 * 1.2 * BILIRUBIN_UMOL_PER_MG_DL * factor  # exactly 3 x ULN (or just above)
    labs = good_labs(bilirubin=obs(BILIRUBIN_MOLES, value, "umol/L", uln=1.2, uln_unit="mg/dL"))
    result = evaluate("inclusion-10", *labs)
    assert result.result == expected
    assert "x ULN (1.2 mg/dL)" in result.reason


@pytest.mark.parametrize(("value", "expected"), [(3.0, "met"), (3.01, "not-met")])
def test_bilirubin_in_mg_per_dl_with_uln_in_umol_per_l(value, expected):
    uln = 1.0 * BILIRUBIN_UMOL_PER_MG_DL  # 17.1 umol/L = 1 mg/dL
    labs = good_labs(bilirubin=obs(BILIRUBIN_MASS, value, "mg/dL", uln=uln, uln_unit="umol/L"))
    assert evaluate("inclusion-10", *labs).result == expected


def test_bilirubin_below_detection_limit_is_met():
    labs = good_labs(bilirubin=obs(BILIRUBIN_MASS, 0.2, "mg/dL", comparator="<", uln=1.2))
    assert evaluate("inclusion-10", *labs).result == "met"


@pytest.mark.parametrize("lab", ["ast", "alt"])
@pytest.mark.parametrize(("value", "expected"), [(200, "met"), (200.5, "not-met")])
def test_transaminases_five_times_uln(lab, value, expected):
    code = AST if lab == "ast" else ALT
    labs = good_labs(**{lab: obs(code, value, "U/L", uln=40)})
    assert evaluate("inclusion-10", *labs).result == expected


def test_transaminase_uln_in_another_enzyme_unit_converts():
    # 40 U/L = 0.6667 ukat/L; 190 U/L is 4.75 x ULN.
    labs = good_labs(ast=obs(AST, 190, "U/L", uln=40 / 60, uln_unit="ukat/L"))
    assert evaluate("inclusion-10", *labs).result == "met"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (obs(CREATININE_MASS, 1.6, "mg/dL"), "met"),
        (obs(CREATININE_MASS, 1.61, "mg/dL"), "not-met"),
        (obs(CREATININE_MOLES, 141.44, "umol/L"), "met"),  # 1.59997 mg/dL
        (obs(CREATININE_MOLES, 141.5, "umol/L"), "not-met"),  # 1.60065 mg/dL
        (obs(CREATININE_MOLES, 1.6 * CREATININE_UMOL_PER_MG_DL, "umol/L"), "met"),  # exactly 1.6 mg/dL
        (obs(CREATININE_MOLES, 0.141, "mmol/L"), "met"),
    ],
)
def test_creatinine_limit_in_either_unit(resource, expected):
    assert evaluate("inclusion-10", *good_labs(creatinine=resource)).result == expected


@pytest.mark.parametrize("unit", ["mmol/mol", "foo", "U/L"])
def test_unconvertible_creatinine_unit_is_unknown(unit):
    result = evaluate("inclusion-10", *good_labs(creatinine=obs(CREATININE_MASS, 0.5, unit)))
    assert result.result == "unknown"
    assert "not convertible" in result.reason


def test_creatinine_without_a_unit_is_unknown():
    lab = obs(CREATININE_MASS, 0.5, "mg/dL")
    del lab["valueQuantity"]["code"], lab["valueQuantity"]["unit"], lab["valueQuantity"]["system"]
    assert evaluate("inclusion-10", *good_labs(creatinine=lab)).result == "unknown"


def test_relative_lab_in_an_unconvertible_unit_is_unknown():
    labs = good_labs(bilirubin=obs(BILIRUBIN_MASS, 0.5, "mmol/mol", uln=1.2, uln_unit="mg/dL"))
    result = evaluate("inclusion-10", *labs)
    assert result.result == "unknown"
    assert "not convertible" in result.reason


def test_no_reference_range_is_unknown():
    labs = good_labs(ast=obs(AST, 30, "U/L"))
    result = evaluate("inclusion-10", *labs)
    assert result.result == "unknown"
    assert "no normal reference range" in result.reason


def test_reference_range_without_high_or_of_another_type_is_unknown():
    no_high = reference_range(None, "U/L", low=5)
    therapeutic = reference_range(40, "U/L", type_code="treatment")
    assert evaluate("inclusion-10", *good_labs(ast=obs(AST, 30, "U/L", ranges=[no_high]))).result == "unknown"
    assert (
        evaluate("inclusion-10", *good_labs(ast=obs(AST, 30, "U/L", ranges=[therapeutic]))).result
        == "unknown"
    )


def test_untyped_reference_range_counts_as_normal():
    labs = good_labs(ast=obs(AST, 30, "U/L", ranges=[reference_range(40, "U/L", type_code=None)]))
    assert evaluate("inclusion-10", *labs).result == "met"


AGE_RANGES = [
    reference_range(50, "U/L", age=(1, 6)),
    reference_range(30, "U/L", age=(7, 18)),
]


@pytest.mark.parametrize(
    ("age", "expected"),
    [(5, "met"), (12, "not-met")],  # 200 U/L: 4 x ULN for a 5-year-old, 6.7 x ULN for a 12-year-old
)
def test_age_specific_reference_range(age, expected):
    labs = good_labs(alt=obs(ALT, 200, "U/L", ranges=AGE_RANGES))
    assert evaluate("inclusion-10", patient(born_years_ago(age)), *labs).result == expected


def test_age_specific_range_needs_a_full_birth_date():
    labs = good_labs(alt=obs(ALT, 200, "U/L", ranges=AGE_RANGES))
    assert evaluate("inclusion-10", patient("2014"), *labs).result == "unknown"


SEX_RANGES = [
    reference_range(1.0, "mg/dL", sex="male"),
    reference_range(0.8, "mg/dL", sex="female"),
]


@pytest.mark.parametrize(
    ("gender", "expected"),
    [
        ("male", "met"),  # 2.8 mg/dL = 2.8 x ULN
        ("female", "not-met"),  # 3.5 x ULN
        (None, "unknown"),  # no range fits a patient of unknown sex
        ("other", "unknown"),
    ],
)
def test_sex_specific_reference_range(gender, expected):
    labs = good_labs(bilirubin=obs(BILIRUBIN_MASS, 2.8, "mg/dL", ranges=SEX_RANGES))
    assert evaluate("inclusion-10", patient(gender=gender), *labs).result == expected


@pytest.mark.parametrize(("ago", "expected"), [(7, "met"), (8, "unknown")])
def test_labs_must_be_within_7_days(ago, expected):
    labs = good_labs(creatinine=obs(CREATININE_MASS, 0.5, "mg/dL", ago=ago))
    result = evaluate("inclusion-10", *labs)
    assert result.result == expected
    if expected == "unknown":
        assert "8 days old" in result.reason


def test_stale_abnormal_lab_is_unknown_not_a_failure():
    labs = good_labs(creatinine=obs(CREATININE_MASS, 3.0, "mg/dL", ago=10))
    assert evaluate("inclusion-10", *labs).result == "unknown"


# --- hygiene: status, dates and the most recent result -----------------------------------------


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_entered_in_error_and_cancelled_results_are_ignored(status):
    bad_newer = obs(CREATININE_MASS, 5.0, "mg/dL", ago=1, status=status)
    labs = good_labs(creatinine=obs(CREATININE_MASS, 0.5, "mg/dL", ago=3))
    assert evaluate("inclusion-10", *labs, bad_newer).result == "met"
    assert evaluate("inclusion-5", obs(CD7_LOCAL, 95, "%", status=status)).result == "unknown"


def test_future_dated_result_is_ignored():
    future = obs(CREATININE_MASS, 5.0, "mg/dL", ago=-2)
    assert evaluate("inclusion-10", *good_labs(), future).result == "met"
    assert evaluate("inclusion-5", obs(CD7_LOCAL, 95, "%", ago=-1)).reason == "no CD7-positive blasts result"


def test_newer_normal_result_beats_older_abnormal():
    older = obs(CREATININE_MASS, 2.5, "mg/dL", ago=5)
    newer = obs(CREATININE_MASS, 0.7, "mg/dL", ago=1, id="newer")
    result = evaluate("inclusion-10", *good_labs(creatinine=newer), older)
    assert result.result == "met"
    assert "Observation/newer" in result.evidence


def test_newer_abnormal_result_beats_older_normal():
    older = obs(CREATININE_MASS, 0.7, "mg/dL", ago=5)
    newer = obs(CREATININE_MASS, 2.5, "mg/dL", ago=1)
    assert evaluate("inclusion-10", *good_labs(creatinine=newer), older).result == "not-met"


def test_same_day_results_are_ordered_by_time():
    morning = obs(CD7_LOCAL, 70, "%", effective=f"{days_ago(1)}T08:00:00Z")
    evening = obs(CD7_LOCAL, 90, "%", effective=f"{days_ago(1)}T18:00:00Z")
    assert evaluate("inclusion-5", evening, morning).result == "met"
    assert evaluate("inclusion-5", morning, evening).result == "met"


def test_most_recent_result_outside_the_window_is_unknown_even_if_older_ones_exist():
    assert evaluate("inclusion-8", obs(LVEF, 30, "%", ago=40), obs(LVEF, 60, "%", ago=35)).result == "unknown"


def test_undated_result_is_unknown():
    result = evaluate("inclusion-5", obs(CD7_LOCAL, 95, "%", ago=None))
    assert result.result == "unknown"
    assert "undated" in result.reason


# --- exclusion-13: platelets < 10 x10^9/L ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (9.9, "10*9/L", "met"),
        (10, "10*9/L", "not-met"),
        (9.9, "10*3/uL", "met"),
        (10, "10*3/uL", "not-met"),
        (9900, "/uL", "met"),
        (150, "10*3/uL", "not-met"),
    ],
)
def test_platelet_threshold(value, unit, expected):
    assert evaluate("exclusion-13", obs(PLATELETS, value, unit)).result == expected


def test_platelets_below_a_reported_limit():
    assert evaluate("exclusion-13", obs(PLATELETS, 10, "10*9/L", comparator="<")).result == "met"
    assert evaluate("exclusion-13", obs(PLATELETS, 10, "10*9/L", comparator="<=")).result == "unknown"


def test_no_platelet_count_is_unknown_and_stale_one_too():
    assert evaluate("exclusion-13").result == "unknown"
    assert evaluate("exclusion-13", obs(PLATELETS, 5, "10*9/L", ago=8)).result == "unknown"


def test_platelets_in_a_unit_outside_ucum_and_the_alias_table_are_unknown():
    # Issue 12 changed this test: 'K/uL' (thousands per microlitre on every lab printout) is now read
    # through the alias table (tests/unit/test_terminology_units.py); a unit in neither stays unknown.
    assert evaluate("exclusion-13", obs(PLATELETS, 5, "K/uL")).result == "met"
    assert evaluate("exclusion-13", obs(PLATELETS, 5, "bricks/uL")).result == "unknown"
    assert evaluate("exclusion-13", obs(PLATELETS, 5, "10^9/L")).result == "met"  # valid UCUM


# --- exclusion-10: infections ---------------------------------------------------------------------

NEGATIVE_PANEL = [
    obs(HCV_RNA, answer=NEGATIVE, ago=30),
    obs(HIV, answer=NEGATIVE, ago=30),
    obs(SYPHILIS, answer=NEGATIVE, ago=30),
]


@pytest.mark.parametrize(
    ("hbv", "expected"),
    [
        (obs(HBV_DNA, 350, "[IU]/mL", ago=30), "met"),  # quantity above 0: positive
        (obs(HBV_DNA, 20, "[IU]/mL", comparator="<", ago=30), "not-met"),  # below the detection limit
        (obs(HBV_DNA, 0, "[IU]/mL", ago=30), "not-met"),
        (obs(HBV_DNA, answer=POSITIVE, ago=30), "met"),
        (obs(HBV_DNA, text="Not detected", ago=30), "not-met"),
        (obs(HBV_DNA, 350, "[IU]/mL", ago=91), "unknown"),  # outside 90 days
    ],
)
def test_hbv_dna(hbv, expected):
    assert evaluate("exclusion-10", hbv, *NEGATIVE_PANEL).result == expected


def test_one_missing_infection_test_is_unknown():
    assert evaluate("exclusion-10", *NEGATIVE_PANEL).result == "unknown"


def test_infection_condition_is_met_without_tests():
    assert evaluate("exclusion-10", condition((ICD10CM, "B20"))).result == "met"


# --- pregnancy ----------------------------------------------------------------------------------


def test_positive_hcg_in_a_girl_fails_inclusion_11_and_meets_exclusion_19():
    resources = [*candidate_resources(gender="female"), obs(HCG, answer=POSITIVE, ago=0)]
    result = screen(*resources)
    assert result_of(result, "inclusion-11").result == "not-met"
    assert result_of(result, "exclusion-19").result == "met"
    assert result.status == "not-eligible"


def test_hcg_older_than_7_days_is_unknown_for_inclusion_11():
    result = evaluate("inclusion-11", obs(HCG, answer=NEGATIVE, ago=8))
    assert result.result == "unknown"
    assert "most recent serum pregnancy test negative is 8 days old" in result.reason


def test_uninterpretable_hcg_is_unknown():
    result = evaluate("exclusion-19", obs(HCG, text="see report", ago=1))
    assert result.result == "unknown"
    assert "not interpretable" in result.reason


def test_pregnancy_condition_meets_exclusion_19():
    assert evaluate("exclusion-19", condition(PREGNANT)).result == "met"
    assert evaluate("exclusion-19", patient(gender="male"), condition(PREGNANT)).result == "not-met"


def test_boy_candidate_needs_no_pregnancy_test():
    result = screen(*candidate_resources(gender="male"))
    assert result.status == "candidate"
    assert "not applicable (male)" in result_of(result, "inclusion-11").reason
