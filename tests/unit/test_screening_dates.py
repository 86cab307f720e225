"""Day-precision date helpers (mappings/clinical/dates.py)."""

from __future__ import annotations

from datetime import date

import pytest

from mappings.clinical.dates import add_years, day_of, effective_day, years_between


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-16", date(2026, 11, 16)),
        ("2026-11-16T23:30:00-05:00", date(2026, 11, 16)),  # the day in its own offset
        ("2026-11-16T01:00:00Z", date(2026, 11, 16)),
        ("2026-11", None),
        ("2026", None),
        ("2026-02-30", None),
        ("not a date", None),
        (None, None),
        (20261116, None),
    ],
)
def test_day_of(raw, expected):
    assert day_of(raw) == expected


@pytest.mark.parametrize(
    ("born", "on", "years"),
    [
        (date(2024, 11, 23), date(2026, 11, 23), 2),  # the birthday itself
        (date(2024, 11, 24), date(2026, 11, 23), 1),  # the day before
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # 29 February counts on 1 March
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
    ],
)
def test_years_between(born, on, years):
    assert years_between(born, on) == years


def test_add_years_moves_29_february_to_1_march():
    assert add_years(date(2028, 2, 29), -3) == date(2025, 3, 1)
    assert add_years(date(2026, 11, 23), -3) == date(2023, 11, 23)


def test_effective_day_reads_the_element_of_each_resource_type():
    assert effective_day({"effectiveDateTime": "2026-11-20T10:00:00Z"}) == date(2026, 11, 20)
    assert effective_day({"performedDateTime": "2026-10-01"}) == date(2026, 10, 1)
    assert effective_day({"occurrenceDateTime": "2026-10-02"}) == date(2026, 10, 2)
    assert effective_day({"effectivePeriod": {"start": "2026-01-01", "end": "2026-02-01"}}) == date(
        2026, 2, 1
    )
    assert effective_day({"performedPeriod": {"start": "2026-01-01"}}) == date(2026, 1, 1)
    assert effective_day({"issued": "2026-03-03T00:00:00Z"}) == date(2026, 3, 3)
    assert effective_day({}) is None
