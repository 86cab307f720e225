"""Three-valued (Kleene) logic over the results ``met``, ``not-met`` and ``unknown``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Tri = Literal["met", "not-met", "unknown"]
MET: Tri = "met"
NOT_MET: Tri = "not-met"
UNKNOWN: Tri = "unknown"


def all_of(values: Iterable[Tri]) -> Tri:
    """Kleene AND: one ``not-met`` decides; otherwise any ``unknown`` leaves it unknown."""
    seen_unknown = False
    for value in values:
        if value == NOT_MET:
            return NOT_MET
        if value == UNKNOWN:
            seen_unknown = True
    return UNKNOWN if seen_unknown else MET


def any_of(values: Iterable[Tri]) -> Tri:
    """Kleene OR: one ``met`` decides; otherwise any ``unknown`` leaves it unknown."""
    seen_unknown = False
    for value in values:
        if value == MET:
            return MET
        if value == UNKNOWN:
            seen_unknown = True
    return UNKNOWN if seen_unknown else NOT_MET


def negate(value: Tri) -> Tri:
    return {MET: NOT_MET, NOT_MET: MET}.get(value, UNKNOWN)
