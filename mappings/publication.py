"""What every published study resource shares: the adapter's canonical URLs and the code systems it
uses, small JSON builders (identifiers, references, narratives) and R4B validation (see resources.py)."""

from __future__ import annotations

import html
import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from mappings.kinds.publish import BASE
from mappings.kinds.publish import clean as _clean

# --- canonical URLs and systems -----------------------------------------------------------------
PROFILE_RESEARCH_STUDY = f"{BASE}/StructureDefinition/trial-research-study"
PROFILE_PROTOCOL = f"{BASE}/StructureDefinition/trial-protocol"
PROFILE_ELIGIBILITY_GROUP = f"{BASE}/StructureDefinition/eligibility-group"
EXT_TARGET_ENROLLMENT = f"{BASE}/StructureDefinition/target-enrollment"
EXT_ACTION_DOSE = f"{BASE}/StructureDefinition/action-dose"
SID_STUDY_RESOURCE = f"{BASE}/sid/study-resource"
SID_ORG_STUDY_ID = f"{BASE}/sid/org-study-id"
PLAN_DEFINITION_URL = f"{BASE}/PlanDefinition/{{nct}}-protocol"
# HL7 Vulcan Schedule of Activities IG (hl7.fhir.uv.vulcan-schedule, FHIR 4.0.1): its StudyProtocolSoa profile
# (github.com/HL7/Vulcan-schedule-ig, input/fsh/research.fsh) only marks elements must-support; the
# package is not reachable from here, so tests/unit/test_published_shapes.py checks those elements one by one.
# The PlanDefinition conforms but does not list it in meta.profile (see _plan_definition).
PROFILE_VULCAN_SOA_PROTOCOL = "http://hl7.org/fhir/uv/vulcan-schedule/StructureDefinition/StudyProtocolSoa"

NCT_SYSTEM = "https://clinicaltrials.gov"
PHASE_SYSTEM = "http://terminology.hl7.org/CodeSystem/research-study-phase"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type"
PLAN_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
# R4 defines no arm-type code system (ResearchStudy.arm.type has an example binding only); R5 core
# publishes http://hl7.org/fhir/research-study-arm-type, whose codes match the v2 ArmGroupType values.
ARM_TYPE_SYSTEM = "http://hl7.org/fhir/research-study-arm-type"


# --- small builders -----------------------------------------------------------------------------


def words(enum_value: str) -> str:
    """v2 enum -> text: INTERVENTIONAL -> Interventional, SUPPORTIVE_CARE -> Supportive care."""
    return enum_value.replace("_", " ").capitalize()


def identifier(system: str, value: str, type_text: str | None = None) -> dict[str, Any]:
    return _clean({"type": {"text": type_text} if type_text else None, "system": system, "value": value})


def resource_identifier(nct: str, role: str) -> dict[str, Any]:
    return identifier(SID_STUDY_RESOURCE, f"{nct}/{role}")


def reference(resource: dict[str, Any], display: str | None = None) -> dict[str, Any]:
    return _clean({"reference": f"{resource['resourceType']}/{resource['id']}", "display": display})


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Round-trip a resource through its ``fhir.resources`` R4B model; raise if anything is invalid or lost."""
    model_class = get_fhir_model_class(resource["resourceType"])
    model = model_class.model_validate(resource)
    again = json.loads(model.model_dump_json(exclude_none=True))
    if again != resource:
        raise ValueError(f"{resource['resourceType']}/{resource.get('id')}: did not round-trip through R4B")
    return resource


def narrative(*paragraphs: str) -> dict[str, Any]:
    """A generated narrative (dom-6) from plain text; only &, <, > are escaped, as servers store them."""
    body = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs if p)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}
