"""FHIR date handling at day precision (screening windows are counted in whole days)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def day_of(value: Any) -> date | None:
    """The calendar day of a FHIR date/dateTime/instant, or None below day precision or when invalid.

    A dateTime keeps the day written in its own offset: '2026-11-16T23:30:00-05:00' is 16 November.
    """
    if not isinstance(value, str):
        return None
    match = _DAY.match(value)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def years_between(born: date, on: date) -> int:
    """Completed years from ``born`` to ``on`` (a birthday on 29 February counts on 1 March)."""
    years = on.year - born.year
    if (on.month, on.day) < (born.month, born.day):
        years -= 1
    return years


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year + years, month=3, day=1)


def effective_day(resource: dict[str, Any]) -> date | None:
    """When a clinical statement applies: effective/occurrence/performed (start, or end of a period)."""
    for key in (
        "effectiveDateTime",
        "effectiveInstant",
        "occurrenceDateTime",
        "performedDateTime",
        "authoredOn",
        "dateAsserted",
    ):
        if key in resource:
            return day_of(resource[key])
    for key in ("effectivePeriod", "performedPeriod"):
        period = resource.get(key)
        if isinstance(period, dict):
            return day_of(period.get("end")) or day_of(period.get("start"))
    return day_of(resource.get("issued"))
