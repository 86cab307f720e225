"""Words and numbers for people: the engine's reasons are exact; reports, Tasks and notes read these.

- numbers rounded sensibly (``0.414134 x ULN`` -> ``0.41 x ULN``); values already short are kept;
- no UCUM annotations in prose (``> 60 {score}`` -> ``> 60``), UCUM unit codes shown as people write
  them (``10*9/L`` -> ``x10^9/L``, ``umol/L`` -> ``µmol/L``);
- timestamps shown as dates;
- each criterion named by its short title.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from mappings.criteria import CriteriaDefinition, Criterion

# A decimal with three or more fractional digits: the engine's full precision, not a measured value.
_LONG_DECIMAL = re.compile(r"(?<![\w.])(\d+)\.(\d{3,})(?![\w.])")
_DAYS_OLD = re.compile(r"is (\d{1,5}) days old \(needs one within (\d{1,5}) days\)")
_ANNOTATION = re.compile(r"\s?\{[^{}\s]{1,40}\}")
_TIMESTAMP = re.compile(r"\b(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
_UNITS = (
    (re.compile(r"(?<![\w*^])10\*(\d+)/L\b"), r"x10^\1/L"),
    (re.compile(r"(?<![\w*^])10\*(\d+)/uL\b"), r"x10^\1/µL"),
    (re.compile(r"\bumol/L\b"), "µmol/L"),
    (re.compile(r"\bukat/L\b"), "µkat/L"),
    (re.compile(r"\bug/"), "µg/"),
)


def number(value: float) -> str:
    """A value for people: 2 decimals below 10, 1 below 100, none above; no trailing zeros."""
    size = abs(value)
    places = 2 if size < 10 else 1 if size < 100 else 0
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def unit(code: str | None) -> str:
    """A UCUM code as people write it; annotations alone (``{score}``) read as nothing."""
    if not code:
        return ""
    return prose(code).strip()


def prose(text: str, as_of: date | None = None) -> str:
    """The engine's wording made readable: rounded numbers, no annotations, dates as dates (with the
    as-of date, "is 10 days old (needs one within 7 days)" becomes the dates themselves)."""
    text = _TIMESTAMP.sub(r"\1", text)
    if as_of is not None:
        text = _DAYS_OLD.sub(
            lambda m: (
                f"dated {(as_of - timedelta(days=int(m[1]))).isoformat()} (needs one dated "
                f"{(as_of - timedelta(days=int(m[2]))).isoformat()} or later)"
            ),
            text,
        )
    text = _LONG_DECIMAL.sub(lambda m: number(float(f"{m.group(1)}.{m.group(2)}")), text)
    text = _ANNOTATION.sub("", text)
    for pattern, replacement in _UNITS:
        text = pattern.sub(replacement, text)
    return text


def day(value: date) -> str:
    return value.isoformat()


def title(criterion: Criterion) -> str:
    """The criterion's short title; the first words of the registry text where none is defined."""
    if criterion.title:
        return criterion.title
    words = criterion.text.split()
    short = " ".join(words[:8])
    return short + ("..." if len(words) > 8 else "")


def titles(definition: CriteriaDefinition) -> dict[str, str]:
    return {c.id: title(c) for c in definition.criteria}


def threshold(
    comparator: str | None, value: float | None, unit_code: str | None, relative: str | None
) -> str:
    """``>= 95%``, ``<= 3 x ULN``, ``> 60``: a clause's test for people."""
    if comparator is None or value is None:
        return ""
    if relative == "uln":
        return f"{comparator} {number(value)} x ULN"
    shown = unit(unit_code)
    gap = "" if shown == "%" or not shown else " "
    return f"{comparator} {number(value)}{gap}{shown}".strip()
