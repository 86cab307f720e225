"""Kleene three-valued logic (mappings/clinical/tri.py): truth tables and algebraic laws."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.clinical.tri import MET, NOT_MET, UNKNOWN, all_of, any_of, negate

values = st.sampled_from([MET, NOT_MET, UNKNOWN])
value_lists = st.lists(values, max_size=6)

# Truth order: not-met < unknown < met.
RANK = {NOT_MET: 0, UNKNOWN: 1, MET: 2}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (MET, MET, MET),
        (MET, UNKNOWN, UNKNOWN),
        (MET, NOT_MET, NOT_MET),
        (UNKNOWN, UNKNOWN, UNKNOWN),
        (UNKNOWN, NOT_MET, NOT_MET),
        (NOT_MET, NOT_MET, NOT_MET),
    ],
)
def test_and_truth_table(a, b, expected):
    assert all_of([a, b]) == expected
    assert all_of([b, a]) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (MET, MET, MET),
        (MET, UNKNOWN, MET),
        (MET, NOT_MET, MET),
        (UNKNOWN, UNKNOWN, UNKNOWN),
        (UNKNOWN, NOT_MET, UNKNOWN),
        (NOT_MET, NOT_MET, NOT_MET),
    ],
)
def test_or_truth_table(a, b, expected):
    assert any_of([a, b]) == expected
    assert any_of([b, a]) == expected


def test_negate():
    assert negate(MET) == NOT_MET
    assert negate(NOT_MET) == MET
    assert negate(UNKNOWN) == UNKNOWN


def test_empty_combinations_are_the_identities():
    assert all_of([]) == MET
    assert any_of([]) == NOT_MET


def test_combinators_accept_generators():
    assert all_of(v for v in (MET, UNKNOWN)) == UNKNOWN
    assert any_of(v for v in (NOT_MET, MET)) == MET


@given(value_lists)
def test_and_or_are_order_independent(items):
    assert all_of(items) == all_of(reversed(items)) == all_of(sorted(items))
    assert any_of(items) == any_of(reversed(items)) == any_of(sorted(items))


@given(values, values)
def test_commutativity(a, b):
    assert all_of([a, b]) == all_of([b, a])
    assert any_of([a, b]) == any_of([b, a])


@given(values, values, values)
def test_associativity(a, b, c):
    assert all_of([all_of([a, b]), c]) == all_of([a, all_of([b, c])]) == all_of([a, b, c])
    assert any_of([any_of([a, b]), c]) == any_of([a, any_of([b, c])]) == any_of([a, b, c])


@given(values)
def test_identity_and_annihilator(a):
    assert all_of([a, MET]) == a
    assert any_of([a, NOT_MET]) == a
    assert all_of([a, NOT_MET]) == NOT_MET
    assert any_of([a, MET]) == MET


@given(values)
def test_idempotence_and_double_negation(a):
    assert all_of([a, a]) == a
    assert any_of([a, a]) == a
    assert negate(negate(a)) == a


@given(value_lists)
def test_de_morgan(items):
    assert negate(all_of(items)) == any_of(negate(v) for v in items)
    assert negate(any_of(items)) == all_of(negate(v) for v in items)


@given(values, values, values)
def test_monotone_in_truth_order(a, a2, b):
    """Raising one input (not-met < unknown < met) never lowers AND or OR."""
    if RANK[a] <= RANK[a2]:
        assert RANK[all_of([a, b])] <= RANK[all_of([a2, b])]
        assert RANK[any_of([a, b])] <= RANK[any_of([a2, b])]


@given(values, values, values)
def test_resolving_an_unknown_never_flips_a_decided_result(known, b, c):
    """Information monotonicity: a decided result stays decided whatever an unknown turns out to be."""
    for combine in (all_of, any_of):
        decided = combine([UNKNOWN, b, c])
        if decided != UNKNOWN:
            assert combine([known, b, c]) == decided


@given(value_lists)
def test_and_is_the_minimum_and_or_the_maximum(items):
    ranks = [RANK[v] for v in items]
    assert RANK[all_of(items)] == min(ranks, default=RANK[MET])
    assert RANK[any_of(items)] == max(ranks, default=RANK[NOT_MET])
