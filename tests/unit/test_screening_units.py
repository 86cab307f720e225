"""Unit conversion (UCUM + molar mass) and tolerant comparison (mappings/clinical/units.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.clinical.units import UnitError, compare, convert, ucum_code

CREATININE = 113.12  # g/mol, as in criteria.yaml
BILIRUBIN = 584.66

lab_values = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False, allow_infinity=False)
any_values = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


# --- convert ------------------------------------------------------------------------------------


def test_creatinine_mass_to_substance_matches_the_textbook_factor():
    assert convert(1, "mg/dL", "umol/L", CREATININE) == pytest.approx(88.4, rel=1e-3)
    assert convert(1.6, "mg/dL", "umol/L", CREATININE) == pytest.approx(141.44, rel=1e-3)


def test_bilirubin_mass_to_substance_matches_the_textbook_factor():
    assert convert(1, "mg/dL", "umol/L", BILIRUBIN) == pytest.approx(17.1, rel=1e-3)


def test_mass_to_substance_needs_a_molar_mass():
    assert convert(1, "mg/dL", "umol/L") is None


def test_plain_ucum_conversions():
    assert convert(9.9, "10*3/uL", "10*9/L") == pytest.approx(9.9)
    assert convert(85000, "/uL", "10*9/L") == pytest.approx(85)
    assert convert(1, "g/L", "mg/dL") == pytest.approx(100)
    assert convert(0.5, "1", "%") == pytest.approx(50)
    assert convert(30, "mo", "a") == pytest.approx(2.5)


def test_same_unit_and_annotations_are_identity():
    assert convert(3.5, "U/L", "U/L") == 3.5
    assert convert(1, "{score}", "{score}") == 1
    assert convert(2, "{score}", "1") == 2


@pytest.mark.parametrize(
    ("source", "target"),
    [("foo", "mg/dL"), ("mmol/mol", "mg/dL"), ("mg/dL", "U/L"), ("10*9/L", "%"), ("", "mg/dL")],
)
def test_unconvertible_units_give_none(source, target):
    assert convert(1.0, source, target, CREATININE) is None


def test_missing_unit_or_non_finite_value_gives_none():
    assert convert(1.0, None, "mg/dL") is None
    assert convert(math.inf, "mg/dL", "g/L") is None
    assert convert(math.nan, "mg/dL", "g/L") is None


def test_unit_codes_are_trimmed():
    assert convert(1, " mg/dL ", "g/L") == pytest.approx(0.01)


@settings(deadline=None)  # the first conversion builds the UCUM registry (~1 s)
@given(lab_values, st.sampled_from([CREATININE, BILIRUBIN]))
def test_mass_substance_round_trip(value, molar_mass):
    there = convert(value, "mg/dL", "umol/L", molar_mass)
    assert there is not None
    assert convert(there, "umol/L", "mg/dL", molar_mass) == pytest.approx(value, rel=1e-9)


@settings(deadline=None)  # the first conversion builds the UCUM registry (~1 s)
@given(lab_values)
def test_creatinine_factor_is_linear(value):
    assert convert(value, "mg/dL", "umol/L", CREATININE) == pytest.approx(
        value * 10_000 / CREATININE, rel=1e-9
    )


@settings(deadline=None)  # the first conversion builds the UCUM registry (~1 s)
@given(lab_values)
def test_platelet_units_round_trip(value):
    assert convert(value, "10*3/uL", "10*9/L") == pytest.approx(value, rel=1e-12)
    assert convert(convert(value, "10*9/L", "10*3/uL"), "10*3/uL", "10*9/L") == pytest.approx(value)


# --- ucum_code ----------------------------------------------------------------------------------


def test_ucum_code_prefers_the_code_of_a_ucum_quantity():
    quantity = {"value": 1, "unit": "mg/dl", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert ucum_code(quantity) == "mg/dL"


def test_ucum_code_falls_back_to_unit_only_without_a_system():
    assert ucum_code({"value": 1, "unit": "mg/dL"}) == "mg/dL"


def test_ucum_code_distrusts_other_systems():
    assert (
        ucum_code({"value": 1, "unit": "mg/dL", "system": "http://example.org/units", "code": "MGDL"}) is None
    )


# --- compare ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "comparator", "right", "expected"),
    [
        (80, ">", 80, False),
        (80.1, ">", 80, True),
        (80, ">=", 80, True),
        (49.9, ">=", 50, False),
        (9.9, "<", 10, True),
        (10, "<", 10, False),
        (1.6, "<=", 1.6, True),
        (1.6000001, "<=", 1.6, False),
    ],
)
def test_compare_boundaries(left, comparator, right, expected):
    assert compare(left, comparator, right) is expected


def test_compare_absorbs_conversion_noise():
    # 1.6 mg/dL -> umol/L -> mg/dL is not bit-exact; it must still count as equal to 1.6.
    noisy = 1.6 * (1 + 1e-12)
    assert compare(noisy, "<=", 1.6)
    assert not compare(noisy, ">", 1.6)


def test_compare_rejects_an_unknown_comparator():
    with pytest.raises(UnitError):
        compare(1, "==", 1)


@given(any_values, any_values)
def test_compare_trichotomy(a, b):
    below, above = compare(a, "<", b), compare(a, ">", b)
    equal = compare(a, "<=", b) and compare(a, ">=", b)
    assert [below, equal, above].count(True) == 1


@given(any_values, any_values)
def test_compare_is_antisymmetric_and_weak_forms_include_equality(a, b):
    assert compare(a, "<", b) == compare(b, ">", a)
    assert compare(a, "<=", b) == compare(b, ">=", a)
    assert compare(a, "<=", b) == (not compare(a, ">", b))
    assert compare(a, ">=", b) == (not compare(a, "<", b))


@given(any_values)
def test_compare_reflexive(a):
    assert compare(a, "<=", a) and compare(a, ">=", a)
    assert not compare(a, "<", a) and not compare(a, ">", a)


def _convert_in_child() -> float | None:
    return convert(1.0, "mg/dL", "umol/L", 113.12)


def test_a_child_forked_while_the_registry_is_being_built_still_converts():
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from mappings.clinical import units

    units.warm_up().join()
    # as if a warm-up thread were building at the fork
    with units._BUILDING, ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        converted = pool.submit(_convert_in_child).result(timeout=60)
    assert converted == pytest.approx(88.4, abs=0.1)
