"""Age (inclusion-1), vital status (inclusion-6) and the sex gate of sex-specific clauses."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.clinical import (
    AS_OF,
    HCG,
    NEGATIVE,
    POSITIVE,
    born_years_ago,
    candidate_resources,
    evaluate,
    obs,
    patient,
    screen,
)

# --- inclusion-1: 2 <= age <= 18 in completed years ---------------------------------------------


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        (born_years_ago(2), "met"),  # the 2nd birthday is today
        (born_years_ago(2, extra_days=-1), "not-met"),  # 2nd birthday tomorrow: still 1
        (born_years_ago(18), "met"),
        (born_years_ago(19, extra_days=-1), "met"),  # the day before the 19th birthday
        (born_years_ago(19), "not-met"),  # 19 today
        (born_years_ago(10), "met"),
        (born_years_ago(1), "not-met"),
    ],
)
def test_age_boundaries(birth, expected):
    assert evaluate("inclusion-1", patient(birth)).result == expected


def test_age_reason_and_evidence():
    result = evaluate("inclusion-1", patient(born_years_ago(19)))
    assert result.reason == f"age 19 years on {AS_OF.isoformat()}, outside 2-18"
    assert result.evidence == ["Patient/p1"]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (date(2026, 2, 28), "not-met"),  # no 29 February in 2026: the 2nd birthday falls on 1 March
        (date(2026, 3, 1), "met"),
    ],
)
def test_leap_day_birth_reaches_2_on_1_march(as_of, expected):
    assert evaluate("inclusion-1", patient("2024-02-29"), as_of=as_of).result == expected


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (date(2027, 2, 28), "met"),  # still 18
        (date(2027, 3, 1), "not-met"),  # 19
    ],
)
def test_leap_day_birth_turns_19_on_1_march(as_of, expected):
    assert evaluate("inclusion-1", patient("2008-02-29"), as_of=as_of).result == expected


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("2015", "met"),  # 10 or 11 whatever the day
        ("2008", "met"),  # 17 or 18
        ("2008-06", "met"),  # 18 throughout June 2008
        ("2007", "unknown"),  # 18 or 19
        ("2007-11", "unknown"),  # 18 if born after 23 November 2007, else 19
        ("2007-10", "not-met"),  # 19 throughout
        ("2024-11", "unknown"),  # 1 or 2
        ("2024-12", "not-met"),  # 1 throughout
        ("2000", "not-met"),
    ],
)
def test_partial_birth_dates(birth, expected):
    result = evaluate("inclusion-1", patient(birth))
    assert result.result == expected
    if expected == "unknown":
        assert "partial birth date" in result.reason


@pytest.mark.parametrize("birth", [None, "", "2014-13-45", "soon"])
def test_missing_or_unreadable_birth_date_is_unknown(birth):
    assert evaluate("inclusion-1", patient(birth)).result == "unknown"


def test_birth_date_after_as_of_is_unknown():
    assert evaluate("inclusion-1", patient("2026-12-01")).result == "unknown"


# --- inclusion-6: alive (+ survival estimate, manual) -------------------------------------------


def test_living_patient_needs_manual_survival_estimate():
    result = evaluate("inclusion-6", patient())
    assert result.result == "unknown"
    assert "no death recorded" in result.reason
    assert "requires manual review" in result.reason


@pytest.mark.parametrize("deceased", [True, "2026-11-01", "2026-11-23T08:00:00Z", "2026"])
def test_deceased_patient_is_never_a_candidate(deceased):
    resources = candidate_resources()
    resources[0] = patient(deceased=deceased)
    result = screen(*resources)
    inclusion_6 = next(c for c in result.criteria if c.id == "inclusion-6")
    assert inclusion_6.result == "not-met"
    assert "deceased" in inclusion_6.reason
    assert result.status == "not-eligible"


def test_deceased_false_or_death_after_as_of_is_alive():
    assert "no death recorded" in evaluate("inclusion-6", patient(deceased=False)).reason
    assert evaluate("inclusion-6", patient(deceased="2026-12-24")).result == "unknown"


# --- sex gate -----------------------------------------------------------------------------------


def test_pregnancy_test_does_not_apply_to_males():
    result = evaluate("inclusion-11", patient(gender="male"))
    assert result.result == "unknown"  # contraception agreement still needs review
    assert "not applicable (male)" in result.reason
    assert evaluate("exclusion-19", patient(gender="male")).result == "not-met"


def test_positive_hcg_in_a_male_record_is_not_applicable():
    male = patient(gender="male")
    assert evaluate("exclusion-19", male, obs(HCG, answer=POSITIVE, ago=1)).result == "not-met"


@pytest.mark.parametrize("gender", [None, "unknown", "other"])
def test_unknown_sex_is_screened_as_female(gender):
    someone = patient(gender=gender)
    assert evaluate("exclusion-19", someone, obs(HCG, answer=POSITIVE, ago=1)).result == "met"
    assert evaluate("inclusion-11", someone, obs(HCG, answer=POSITIVE, ago=1)).result == "not-met"
    assert evaluate("inclusion-11", someone, obs(HCG, answer=NEGATIVE, ago=1)).result == "unknown"
