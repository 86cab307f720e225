"""Building FHIR search parameter values safely.

Data must never change a query: a comma in a value would split it into two alternatives, a `|` would
change the system, a `$` starts a composite. FHIR escapes them with a backslash (R4 3.1.1.5.7).
"""

from __future__ import annotations

from collections.abc import Iterable

_SPECIAL = ("\\", ",", "$", "|")


def escape(value: str) -> str:
    for char in _SPECIAL:  # backslash first, so the escapes added next are not doubled
        value = value.replace(char, "\\" + char)
    return value


def token(system: str | None, code: str) -> str:
    """A token search value ``system|code`` with both parts escaped."""
    return f"{escape(system)}|{escape(code)}" if system is not None else escape(code)


def any_of(values: Iterable[str]) -> str:
    """An OR of already-escaped values (comma-separated)."""
    return ",".join(values)
