"""FHIR R5 shapes of the study resources and of the candidate ResearchSubject (``map --fhir-version 5.0``).

The R4 resources (``mappings.resources``) stay the source: each function here maps one R4 resource to its
R5 shape, and every result is validated against the official R5 definitions shipped by ``fhir.resources``
(its default package is R5 5.0.0), so a missing or renamed element fails loudly, never silently.

What changes from R4 (hl7.org/fhir/R5/researchstudy.html, researchsubject.html, group.html):
- ResearchStudy.status is a publication status; the R4 study status moves to progressStatus.state
  (http://hl7.org/fhir/research-study-status keeps every R4 code); enrollment -> recruitment.eligibility,
  the target-enrollment extension -> recruitment.targetNumber; sponsor and contacts -> associatedParty
  (roles lead-sponsor and general-contact, http://hl7.org/fhir/research-study-party-role); arm ->
  comparisonGroup; focus is a CodeableReference; category -> classifier; relatedArtifact.url ->
  relatedArtifact.document.url.
- Group: actual -> membership (definitional for eligibility criteria).
- ResearchSubject: the R4 status -> progress.subjectState (http://terminology.hl7.org/CodeSystem/
  research-subject-state has the same 13 codes); individual -> subject; status is a publication status.
Our R4 profiles are R4-only, so meta.profile is dropped in R5 output.
"""

from __future__ import annotations

import json
from typing import Any

from fhir.resources import get_fhir_model_class

from mappings.resources import PLAN_STATUS, StudyResources

STUDY_STATUS_SYSTEM = "http://hl7.org/fhir/research-study-status"
PARTY_ROLE_SYSTEM = "http://hl7.org/fhir/research-study-party-role"
SUBJECT_STATE_SYSTEM = "http://terminology.hl7.org/CodeSystem/research-subject-state"
FHIR_VERSION = "5.0.0"
R4_PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type"
R5_PURPOSE_SYSTEM = "http://hl7.org/fhir/research-study-prim-purp-type"


def validate_r5(resource: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through the ``fhir.resources`` R5 model; raise if anything is invalid or lost."""
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    again = json.loads(model.model_dump_json(exclude_none=True))
    if again != resource:
        raise ValueError(f"{resource['resourceType']}/{resource.get('id')}: did not round-trip through R5")
    return resource


def _without_profile(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    rest = {k: v for k, v in (meta or {}).items() if k != "profile"}
    return rest or None


def _party(role: str, name: str | None = None, party: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": {"coding": [{"system": PARTY_ROLE_SYSTEM, "code": role}]}}
    if name:
        entry["name"] = name
    if party:
        entry["party"] = party
    return entry


def _r5_purpose(concept: dict[str, Any] | None) -> dict[str, Any] | None:
    """R5 moved the primary purpose codes to http://hl7.org/fhir/research-study-prim-purp-type (same
    codes; HAPI's R5 validator checks the binding)."""
    if not concept:
        return concept
    codings = [
        {**c, "system": R5_PURPOSE_SYSTEM} if c.get("system") == R4_PURPOSE_SYSTEM else c
        for c in concept.get("coding", [])
    ]
    return {**concept, "coding": codings} if codings else concept


def _artifact(artifact: dict[str, Any]) -> dict[str, Any]:
    """R5 RelatedArtifact keeps a web page's address as document.url (R4: url)."""
    r5 = {k: v for k, v in artifact.items() if k != "url"}
    if "url" in artifact:
        r5["document"] = {"url": artifact["url"]}
    return r5


def research_study_r5(study: dict[str, Any], eligibility: dict[str, Any]) -> dict[str, Any]:
    """The R5 ResearchStudy; ``eligibility`` is the R5 resource recruitment.eligibility references."""
    known = {
        "resourceType", "id", "meta", "extension", "text", "identifier", "title", "protocol", "status",
        "primaryPurposeType", "phase", "category", "focus", "condition", "contact", "relatedArtifact",
        "keyword", "description", "enrollment", "sponsor", "arm",
    }  # fmt: skip
    unknown = set(study) - known
    if unknown:  # a new R4 element must be mapped here, not dropped
        raise ValueError(f"ResearchStudy/{study.get('id')}: no R5 mapping for {sorted(unknown)}")
    target = [e for e in study.get("extension", []) if e["url"].endswith("/target-enrollment")]
    others = [e for e in study.get("extension", []) if not e["url"].endswith("/target-enrollment")]
    recruitment: dict[str, Any] = {
        "eligibility": {"reference": f"{eligibility['resourceType']}/{eligibility['id']}"}
    }
    if target:
        recruitment = {"targetNumber": target[0]["valueUnsignedInt"], **recruitment}
    parties = []
    if "sponsor" in study:
        parties.append(_party("lead-sponsor", study["sponsor"].get("display"), study["sponsor"]))
    # R5 associatedParty has a name but no telecom: the contact's phone and e-mail stay in R4 only.
    parties += [_party("general-contact", c.get("name")) for c in study.get("contact", []) if c.get("name")]
    r5: dict[str, Any] = {
        "resourceType": "ResearchStudy",
        "id": study["id"],
        "meta": _without_profile(study.get("meta")),
        "extension": others or None,
        "text": study.get("text"),
        "identifier": study.get("identifier"),
        "title": study.get("title"),
        "protocol": study.get("protocol"),
        "relatedArtifact": [_artifact(a) for a in study.get("relatedArtifact", [])] or None,
        "status": PLAN_STATUS.get(study["status"], "active"),
        "primaryPurposeType": _r5_purpose(study.get("primaryPurposeType")),
        "phase": study.get("phase"),
        "focus": [{"concept": f} for f in study.get("focus", [])] or None,
        "condition": study.get("condition"),
        "keyword": study.get("keyword"),
        "description": study.get("description"),
        "classifier": study.get("category"),
        "associatedParty": parties or None,
        "progressStatus": [
            {"state": {"coding": [{"system": STUDY_STATUS_SYSTEM, "code": study["status"]}]}, "actual": True}
        ],
        "recruitment": recruitment,
        "comparisonGroup": [
            {k: v for k, v in arm.items() if k in ("name", "type", "description")}
            for arm in study.get("arm", [])
        ]
        or None,
    }
    return validate_r5({k: v for k, v in r5.items() if v is not None})


def group_r5(group: dict[str, Any]) -> dict[str, Any]:
    """The R5 eligibility Group: the same characteristics, ``actual: false`` as ``membership: definitional``."""
    r5 = {k: v for k, v in group.items() if k != "actual"}
    r5["meta"] = _without_profile(group.get("meta"))
    r5["membership"] = "enumerated" if group.get("actual") else "definitional"
    return validate_r5({k: v for k, v in r5.items() if v is not None})


def research_subject_r5(subject: dict[str, Any]) -> dict[str, Any]:
    """The R5 shape of the ResearchSubject flagging writes (R4 status candidate | ineligible | ...)."""
    if subject.get("assignedArm") or subject.get("actualArm"):
        # R5 names a comparisonGroup by id; an R4 arm name has no id to point at.
        raise ValueError("ResearchSubject arms have no R5 mapping (comparisonGroup ids)")
    state = {"coding": [{"system": SUBJECT_STATE_SYSTEM, "code": subject["status"]}]}
    r5 = {
        "resourceType": "ResearchSubject",
        "id": subject.get("id"),
        "meta": _without_profile(subject.get("meta")),
        "identifier": subject.get("identifier"),
        "status": "active",
        "progress": [{"subjectState": state}],
        "period": subject.get("period"),
        "study": subject["study"],
        "subject": subject["individual"],
        "consent": [subject["consent"]] if subject.get("consent") else None,
    }
    return validate_r5({k: v for k, v in r5.items() if v is not None})


def study_resources_r5(built: StudyResources) -> list[dict[str, Any]]:
    """ResearchStudy and its eligibility Group in R5 (the Organization and PlanDefinition R4 shapes are
    not part of this export)."""
    group = group_r5(built.group)
    return [research_study_r5(built.research_study, group), group]
