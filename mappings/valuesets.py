"""Each concept set of the criteria as a FHIR R4 ValueSet: the same definition the engine evaluates.

``codes`` become listed concepts, ``roots`` ``is-a`` filters, ICD ``ranges`` and ICD-O-3 ``behaviours``
``regex`` filters on the code, ATC ``prefixes`` ``is-a`` filters (ATC groups are their codes' prefixes),
and ``exclude`` items ``compose.exclude`` with ``is-a`` filters. Codes marked ``verified: false`` are
local screening choices and are left out, as in the Group.
"""

from __future__ import annotations

import re
from typing import Any

from mappings.concepts import CodeRange, ConceptSet
from mappings.criteria import CriteriaDefinition

BASE = "http://trial-adapter.org/fhir"


def valueset_url(study: str, name: str) -> str:
    return f"{BASE}/ValueSet/{valueset_id(study, name)}"


def valueset_id(study: str, name: str) -> str:
    return f"{study.lower()}-{name.replace('_', '-')}"


def _range_regex(item: CodeRange) -> str:
    """ICD categories first..last (inclusive, same letter) and any code below them."""
    first, last = item.first.upper(), item.last.upper()
    if first[0] != last[0] or not (first[1:3].isdigit() and last[1:3].isdigit()):
        raise ValueError(f"ICD range {first}-{last} cannot be written as a regex")
    numbers = "|".join(f"{n:02d}" for n in range(int(first[1:3]), int(last[1:3]) + 1))
    return f"{re.escape(first[0])}({numbers})(\\..*)?"


def _include(system: str) -> dict[str, Any]:
    return {"system": system}


def concept_valueset(concept_set: ConceptSet, criteria: CriteriaDefinition) -> dict[str, Any]:
    includes: dict[str, dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []
    for code in concept_set.codes:
        if code.verified:
            entry = {"code": code.code, **({"display": code.display} if code.display else {})}
            includes.setdefault(code.system, _include(code.system)).setdefault("concept", []).append(entry)
    for root in concept_set.roots:
        extra.append(
            {"system": root.system, "filter": [{"property": "concept", "op": "is-a", "value": root.code}]}
        )
    for prefix in concept_set.prefixes:
        extra.append(
            {
                "system": prefix.system,
                "filter": [{"property": "concept", "op": "is-a", "value": prefix.prefix}],
            }
        )
    for item in concept_set.ranges:
        extra.append(
            {
                "system": item.system,
                "filter": [{"property": "code", "op": "regex", "value": _range_regex(item)}],
            }
        )
    for behaviour in concept_set.behaviours:
        pattern = f"[0-9]{{4}}/{re.escape(behaviour.behaviour)}"
        extra.append(
            {"system": behaviour.system, "filter": [{"property": "code", "op": "regex", "value": pattern}]}
        )
    compose: dict[str, Any] = {"include": [*includes.values(), *extra]}
    if concept_set.exclude:
        compose["exclude"] = [
            {"system": x.system, "filter": [{"property": "concept", "op": "is-a", "value": x.prefix}]}
            for x in concept_set.exclude
        ]
    name = "".join(part.capitalize() for part in concept_set.name.split("_"))
    return {
        "resourceType": "ValueSet",
        "id": valueset_id(criteria.study, concept_set.name),
        "url": valueset_url(criteria.study, concept_set.name),
        "version": str(criteria.version),
        "name": name,
        "title": concept_set.display,
        "status": "active",
        "description": f"Concept set `{concept_set.name}` of the {criteria.study} eligibility criteria "
        "(criteria.yaml): what screening evaluates, with descendants of each root.",
        "compose": compose,
    }


def concept_valuesets(criteria: CriteriaDefinition) -> list[dict[str, Any]]:
    """One ValueSet per concept set that has any verified content."""
    out = []
    for concept_set in criteria.concepts.values():
        valueset = concept_valueset(concept_set, criteria)
        if valueset["compose"]["include"]:
            out.append(valueset)
    return out
