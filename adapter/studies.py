"""The studies a worker or the service serves at once: one criteria definition per study.

Every runner takes a sequence of definitions (one per ``--study``); a single definition is accepted
too, as one study. Study ids must differ: a study's flags are found by its id.
"""

from __future__ import annotations

from collections.abc import Sequence

from mappings.criteria import CriteriaDefinition


def served(definitions: CriteriaDefinition | Sequence[CriteriaDefinition]) -> tuple[CriteriaDefinition, ...]:
    """The definitions as a tuple, checked: at least one, no study twice."""
    found = (definitions,) if isinstance(definitions, CriteriaDefinition) else tuple(definitions)
    if not found:
        raise ValueError("at least one study is needed")
    ids = [d.study for d in found]
    twice = sorted({s for s in ids if ids.count(s) > 1})
    if twice:
        raise ValueError(f"study given more than once: {', '.join(twice)}")
    return found
