"""Unit conversion with UCUM (via ucumvert/pint) and a molar mass for mass <-> substance concentrations.

A conversion that cannot be made returns None: the caller reports ``unknown``. A number is never
compared in a unit it was not converted to.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from typing import Any

_DIMENSIONLESS_ANNOTATIONS = {"", "1", "{score}", "{grade}", "{index}"}


@cache
def _registry() -> Any:
    # Importing ucumvert builds pint's registry and parses the UCUM grammar (~1 s): do it once, lazily.
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


class UnitError(ValueError):
    pass


@lru_cache(maxsize=1024)
def _factor(source: str, target: str, molar_mass: float | None) -> float | None:
    """The factor f such that value[source] * f = value[target], or None when not convertible."""
    if source == target:
        return 1.0
    if source in _DIMENSIONLESS_ANNOTATIONS and target in _DIMENSIONLESS_ANNOTATIONS:
        return 1.0
    ureg = _registry()
    try:
        src = ureg.from_ucum(source)
        dst = ureg.from_ucum(target)
    except Exception:  # ucumvert raises lark and pint errors of several kinds for an unknown unit
        return None
    try:
        return float((1 * src).to(dst).magnitude)
    except Exception:
        pass
    if molar_mass is None:
        return None
    # Mass concentration <-> substance concentration: divide or multiply by the molar mass.
    grams_per_mole = molar_mass * ureg.from_ucum("g/mol")
    for candidate in ((1 * src) / grams_per_mole, (1 * src) * grams_per_mole):
        try:
            return float(candidate.to(dst).magnitude)
        except Exception:
            continue
    return None


def convert(value: float, source: str | None, target: str, molar_mass: float | None = None) -> float | None:
    """``value`` in ``source`` expressed in ``target`` (both UCUM codes), or None if not convertible."""
    if source is None or not math.isfinite(value):
        return None
    factor = _factor(source.strip(), target.strip(), molar_mass)
    return None if factor is None else value * factor


def ucum_code(quantity: dict[str, Any]) -> str | None:
    """The UCUM code of a FHIR Quantity: ``code`` when the system is UCUM (or absent), else ``unit``.

    A Quantity whose system is not UCUM has no unit we can trust.
    """
    system = quantity.get("system")
    code = quantity.get("code")
    if code is not None and system in (None, "http://unitsofmeasure.org"):
        return str(code)
    if system is None and quantity.get("unit") is not None:
        return str(quantity["unit"])
    return None


_REL_TOL = 1e-9


def compare(left: float, comparator: str, right: float) -> bool:
    """``left comparator right`` where values equal to 1e-9 relative are equal (conversion noise)."""
    equal = math.isclose(left, right, rel_tol=_REL_TOL, abs_tol=1e-12)
    if comparator == "<":
        return left < right and not equal
    if comparator == "<=":
        return left < right or equal
    if comparator == ">":
        return left > right and not equal
    if comparator == ">=":
        return left > right or equal
    raise UnitError(f"unknown comparator {comparator!r}")


@lru_cache(maxsize=1024)
def is_ucum(code: str) -> bool:
    """True when ``code`` parses as a UCUM unit (so it may go in Quantity.code with the UCUM system)."""
    if not code.strip() or any(c.isspace() or c == "^" for c in code):  # neither is ever in UCUM
        return False
    if code in _DIMENSIONLESS_ANNOTATIONS:
        return True
    try:
        _registry().from_ucum(code)
    except Exception:  # ucumvert raises lark and pint errors of several kinds for an unknown unit
        return False
    return True
