"""Building FHIR search parameter values safely.

Data must never change a query: a comma in a value would split it into two alternatives, a `|` would
change the system, a `$` starts a composite. FHIR escapes them with a backslash (R4 3.1.1.5.7).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

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


def references(resource_type: str, ids: Iterable[str]) -> str:
    """An OR of ``Type/id`` references, escaped: the value of a ``subject``/``patient`` search."""
    return any_of(escape(f"{resource_type}/{i}") for i in ids)


_QUERY_SAFE = ",|:/$"  # readable; everything else (& = + \\ space ...) is percent-encoded


def query(resource_type: str, params: list[tuple[str, str]]) -> str:
    """``Type?name=value&...`` with every value URL-encoded (FHIR's own separators kept readable),
    so an ``&`` or ``=`` inside a value can never start another parameter."""
    return f"{resource_type}?{urlencode(params, safe=_QUERY_SAFE)}"
