"""Unit conversion with UCUM (via ucumvert/pint) and a molar mass for mass <-> substance concentrations.

A conversion that cannot be made returns None: the caller reports ``unknown``. A number is never
compared in a unit it was not converted to.
"""

from __future__ import annotations

import math
import os
import threading
from functools import lru_cache
from typing import Any

_DIMENSIONLESS_ANNOTATIONS = {"", "1", "{score}", "{grade}", "{index}"}
_BUILT: list[Any] = []
_BUILDING = threading.Lock()


def _registry() -> Any:
    # Importing ucumvert builds pint's registry and parses the UCUM grammar (~0.5 s): do it once, lazily.
    with _BUILDING:
        if not _BUILT:
            from ucumvert import PintUcumRegistry

            _BUILT.append(PintUcumRegistry())
        return _BUILT[0]


def _new_lock() -> None:
    global _BUILDING
    _BUILDING = threading.Lock()  # a child forked while a thread was building must not inherit it held


os.register_at_fork(after_in_child=_new_lock)


def warm_up() -> threading.Thread:
    """Build the unit registry in a background thread, while this process waits for something else
    (a server's answers, worker processes): the first conversion then does not pay for it. Join the
    thread before forking workers that convert, so they inherit the registry built."""
    thread = threading.Thread(target=_registry, name="ucum-registry", daemon=True)
    thread.start()
    return thread


def ready() -> None:
    """Build the unit registry now (before forking workers that convert)."""
    _registry()


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


# Unit strings that laboratory systems and HL7 v2 feeds send every day, and the UCUM code each means.
# Keys are compared in lower case with the micro sign and Greek mu read as "u". Only strings whose
# meaning on a lab result is unambiguous are here; anything else is used as UCUM or gives unknown.
# ("K/uL" is kelvin per microlitre in strict UCUM, but on a blood count it is always thousands.)
_UNIT_ALIASES = {
    **dict.fromkeys(
        (
            "k/ul",
            "k/mm3",
            "x10e3/ul",
            "x10^3/ul",
            "10^3/ul",
            "10e3/ul",
            "10*3/ul",
            "x10*3/ul",
            "thou/ul",
            "10^3/mm3",
            "x10(3)/ul",
            "x 10^3/ul",
            "10³/ul",
            "x10³/ul",
            "×10³/ul",
        ),
        "10*3/uL",
    ),
    **dict.fromkeys(
        (
            "x10e9/l",
            "x10^9/l",
            "10^9/l",
            "10e9/l",
            "10*9/l",
            "x10*9/l",
            "x10(9)/l",
            "x 10^9/l",
            "10⁹/l",
            "x10⁹/l",
            "×10⁹/l",
            "× 10⁹/l",
            "giga/l",
        ),
        "10*9/L",
    ),
    **dict.fromkeys(("umol/l", "micromol/l", "mcmol/l"), "umol/L"),
    **dict.fromkeys(("mmol/l",), "mmol/L"),
    **dict.fromkeys(("mg/dl", "mg%"), "mg/dL"),
    **dict.fromkeys(("mg/l",), "mg/L"),
    **dict.fromkeys(("g/dl",), "g/dL"),
    **dict.fromkeys(("g/l",), "g/L"),
    **dict.fromkeys(("/ul", "cells/ul", "/mm3", "cells/mm3", "#/ul", "/cumm"), "/uL"),
    **dict.fromkeys(("%", "percent", "pct"), "%"),
    # The enzyme unit: 1 U = 1 umol/min whether written U or IU (UCUM [IU] is a different, arbitrary unit).
    **dict.fromkeys(("u/l", "iu/l", "units/l", "[iu]/l"), "U/L"),
    **dict.fromkeys(("l/min", "lpm", "liters/min", "litres/min"), "L/min"),
}
# "G/L" is giga per litre on a European blood count but grams per litre elsewhere: never guessed.
_AMBIGUOUS = frozenset({"G/L", "G/l"})
_MICRO = str.maketrans({"µ": "u", "μ": "u"})


def normalise_unit(text: str) -> str | None:
    """The UCUM code an everyday unit string means, or None when it is not in the alias table."""
    if text.strip() in _AMBIGUOUS:
        return None
    key = text.strip().translate(_MICRO).lower().replace(" ", "")
    return _UNIT_ALIASES.get(key) or _UNIT_ALIASES.get(text.strip().translate(_MICRO).lower())


def ucum_code(quantity: dict[str, Any]) -> str | None:
    """The UCUM code of a FHIR Quantity: ``code`` when the system is UCUM (or absent), else ``unit``;
    either read through the alias table first (``K/uL`` -> ``10*3/uL``).

    A Quantity whose system is not UCUM has no unit we can trust.
    """
    system = quantity.get("system")
    code = quantity.get("code")
    unit = quantity.get("unit")
    if code is not None and system in (None, "http://unitsofmeasure.org"):
        text = str(code)
    elif system is None and unit is not None:
        text = str(unit)
    else:
        return None  # another system's unit code: its display is not to be trusted
    return normalise_unit(text) or text


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
