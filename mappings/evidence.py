"""The eligibility logic for other engines: an R4 EvidenceVariable and the CQL Library it points to.

Both come from the same criteria definition as the Group and our screening (``mappings.cql``):

- ``Library`` (type logic-library) carries the CQL text (``text/cql``, base64) with its ``AsOf`` parameter;
- ``EvidenceVariable`` has one characteristic per criterion, in the FLUTE style: a computable criterion's
  ``definitionExpression`` names its CQL define (``text/cql-identifier``) in that Library; a criterion the
  CQL cannot express keeps its registry text as ``definitionCodeableConcept.text`` (a person decides).
  Exclusion criteria have ``exclude: true``; R4 combines characteristics with AND, which is eligibility:
  every inclusion met and no exclusion met. (``definitionByCombination`` is R5-only, so it is not used.)

Only elements common to R4 and R4B are written, and both resources are validated with the R4B models
like every other published resource (``mappings.resources.validate``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from mappings.cql import CqlExport, cql_library
from mappings.criteria import CriteriaDefinition
from mappings.resources import BASE, PLAN_STATUS, validate

LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"


@dataclass(frozen=True)
class EligibilityExport:
    cql: CqlExport
    library: dict[str, Any]
    evidence_variable: dict[str, Any]


def library_url(criteria: CriteriaDefinition) -> str:
    return f"{BASE}/Library/{criteria.study}-eligibility-cql"


def _library(criteria: CriteriaDefinition, export: CqlExport, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Library",
        "id": f"{criteria.study}-eligibility-cql",
        "url": library_url(criteria),
        "version": export.version,
        "name": export.name,
        "title": f"{criteria.study} eligibility criteria (CQL)",
        "status": status,
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "logic-library"}]},
        "description": (
            f"{len(export.expressed)} of {len(criteria.criteria)} criteria as CQL defines named by criterion id: "
            "true = met, false = not met, null = unknown (needs review)."
        ),
        "parameter": [{"name": "AsOf", "use": "in", "min": 0, "max": "1", "type": "date"}],
        "content": [
            {
                "contentType": "text/cql",
                "data": base64.b64encode(export.text.encode("utf-8")).decode("ascii"),
            }
        ],
    }


def _evidence_variable(criteria: CriteriaDefinition, export: CqlExport, status: str) -> dict[str, Any]:
    characteristics = []
    for criterion in criteria.criteria:
        item: dict[str, Any] = {"description": f"{criterion.id}: {criterion.text}"}
        if criterion.id in export.expressed:
            item["definitionExpression"] = {
                "language": "text/cql-identifier",
                "expression": criterion.id,
                "reference": f"{library_url(criteria)}|{export.version}",
            }
        else:
            item["definitionCodeableConcept"] = {"text": criterion.text}
        item["exclude"] = criterion.type == "exclusion"
        characteristics.append(item)
    return {
        "resourceType": "EvidenceVariable",
        "id": f"{criteria.study}-eligibility",
        "url": f"{BASE}/EvidenceVariable/{criteria.study}-eligibility",
        "version": str(criteria.version),
        "name": f"{criteria.study}Eligibility",
        "title": f"Eligibility criteria of {criteria.study}",
        "status": status,
        "description": (
            "Eligible when every inclusion characteristic is met and no exclusion characteristic is; "
            f"computable criteria are CQL defines in {library_url(criteria)}."
        ),
        "characteristic": characteristics,
    }


def eligibility_export(criteria: CriteriaDefinition, research_status: str = "active") -> EligibilityExport:
    """The CQL library, its Library resource and the EvidenceVariable; ``research_status`` is the R4
    ResearchStudy status (the resources' publication status follows it, as the PlanDefinition's does)."""
    export = cql_library(criteria)
    status = PLAN_STATUS.get(research_status, "active")
    return EligibilityExport(
        export,
        validate(_library(criteria, export, status)),
        validate(_evidence_variable(criteria, export, status)),
    )
