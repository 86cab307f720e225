"""The ResearchStudy of a study: registry status, phase, purpose, arms, conditions and contacts
mapped from the ClinicalTrials.gov v2 record (see resources.py)."""

from __future__ import annotations

from typing import Any

from mappings.criteria import CriteriaDefinition, CriteriaDefinitionError
from mappings.kinds.publish import clean as _clean
from mappings.kinds.publish import coding as _coding
from mappings.kinds.publish import concept as _concept
from mappings.publication import (
    ARM_TYPE_SYSTEM,
    EXT_TARGET_ENROLLMENT,
    NCIT,
    NCT_SYSTEM,
    PHASE_SYSTEM,
    PROFILE_RESEARCH_STUDY,
    PURPOSE_SYSTEM,
    SID_ORG_STUDY_ID,
    identifier,
    narrative,
    reference,
    words,
)
from mappings.study import Study, StudyDefinitionError

# --- ClinicalTrials.gov v2 enums -> FHIR R4 codes ------------------------------------------------

# v2 overallStatus -> R4 research-study-status (required binding). R4 has no "not yet recruiting":
# NOT_YET_RECRUITING maps to 'approved' ("the study is approved; not yet active"), the closest R4 code:
# the registry lists the study publicly, so it has passed review, but it is not enrolling yet.
# 'in-review' would claim it is not yet approved; 'active' would claim it is open to accrual.
STUDY_STATUS = {
    "NOT_YET_RECRUITING": "approved",
    "RECRUITING": "active",
    "ENROLLING_BY_INVITATION": "active",
    "ACTIVE_NOT_RECRUITING": "closed-to-accrual",
    "SUSPENDED": "temporarily-closed-to-accrual",
    "TERMINATED": "administratively-completed",
    "COMPLETED": "completed",
    "WITHDRAWN": "withdrawn",
}

PHASES = {
    (): ("n-a", "N/A"),
    ("NA",): ("n-a", "N/A"),
    ("EARLY_PHASE1",): ("early-phase-1", "Early Phase 1"),
    ("PHASE1",): ("phase-1", "Phase 1"),
    ("PHASE1", "PHASE2"): ("phase-1-phase-2", "Phase 1/Phase 2"),
    ("PHASE2",): ("phase-2", "Phase 2"),
    ("PHASE2", "PHASE3"): ("phase-2-phase-3", "Phase 2/Phase 3"),
    ("PHASE3",): ("phase-3", "Phase 3"),
    ("PHASE4",): ("phase-4", "Phase 4"),
}

# NCIt codes beside the R4 phase codes, for consumers that code phase with NCIt (ICH M11, CDISC).
# C54721 "Early Phase 1 Trial": NCI Thesaurus, as listed in ICH M11 trial phase value set C217045
# (hl7.org/fhir/uv/clinical-study-protocol ValueSet m11-phase-vs, drawn from NCIt). Only verified codes here.
NCIT_PHASES = {
    "early-phase-1": ("C54721", "Early Phase 1 Trial"),
}

PRIMARY_PURPOSES = {
    "TREATMENT": ("treatment", "Treatment"),
    "PREVENTION": ("prevention", "Prevention"),
    "DIAGNOSTIC": ("diagnostic", "Diagnostic"),
    "SUPPORTIVE_CARE": ("supportive-care", "Supportive Care"),
    "SCREENING": ("screening", "Screening"),
    "HEALTH_SERVICES_RESEARCH": ("health-services-research", "Health Services Research"),
    "BASIC_SCIENCE": ("basic-science", "Basic Science"),
    "DEVICE_FEASIBILITY": ("device-feasibility", "Device Feasibility"),
}

ARM_TYPES = {
    "EXPERIMENTAL": ("experimental", "Experimental"),
    "ACTIVE_COMPARATOR": ("active-comparator", "Active Comparator"),
    "PLACEBO_COMPARATOR": ("placebo-comparator", "Placebo Comparator"),
    "SHAM_COMPARATOR": ("sham-comparator", "Sham Comparator"),
    "NO_INTERVENTION": ("no-intervention", "No Intervention"),
    "OTHER": ("other-arm-type", "Other Arm Type"),
}


def study_status(study: Study) -> str:
    overall = study.protocolSection.statusModule.overallStatus
    try:
        return STUDY_STATUS[overall]
    except KeyError:
        raise StudyDefinitionError(
            f"{study.nct_id}: overallStatus {overall!r} has no FHIR R4 research-study-status mapping"
        ) from None


def _phase(study: Study) -> dict[str, Any]:
    phases = study.protocolSection.designModule.phases
    key = tuple(sorted(phases))
    if key not in PHASES:
        raise StudyDefinitionError(f"{study.nct_id}: phases {list(phases)} have no FHIR R4 phase mapping")
    code, display = PHASES[key]
    codings = [_coding(PHASE_SYSTEM, code, display)]
    if code in NCIT_PHASES:
        codings.append(_coding(NCIT, *NCIT_PHASES[code]))
    return {"coding": codings, "text": display}


def _primary_purpose(study: Study) -> dict[str, Any] | None:
    info = study.protocolSection.designModule.designInfo
    purpose = info.primaryPurpose if info else None
    if not purpose:
        return None
    if purpose in PRIMARY_PURPOSES:
        code, display = PRIMARY_PURPOSES[purpose]
        return _concept((PURPOSE_SYSTEM, code, display), display)
    return {"text": words(purpose)}  # OTHER, ECT: no R4 code


def _condition_codings(study: Study, criteria: CriteriaDefinition) -> list[dict[str, Any]]:
    """A single-condition study is coded with the primary code of the criteria's diagnosis lineage set.

    v2 keeps conditions as free text; the criteria definition already names the study's disease
    (the lineage concept set of its diagnosis clause, whose first code is the disease itself), so the code
    comes from there rather than from this module. Several conditions, or no diagnosis clause: text only.
    """
    if len(study.protocolSection.conditionsModule.conditions) != 1:
        return []
    try:
        lineage = criteria.concept(criteria.diagnosis_clause().lineage)
    except CriteriaDefinitionError:
        return []
    codes = [c for c in lineage.codes if c.verified]
    return [_coding(codes[0].system, codes[0].code, codes[0].display)] if codes else []


def _description(study: Study) -> str:
    desc = study.protocolSection.descriptionModule
    parts = [
        ("Brief summary", desc.briefSummary),
        ("Detailed description", desc.detailedDescription),
        ("Eligibility criteria", study.protocolSection.eligibilityModule.eligibilityCriteria),
    ]
    return "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in parts if text and text.strip())


def _contact(study: Study) -> list[dict[str, Any]]:
    contacts = []
    for person in study.protocolSection.contactsLocationsModule.centralContacts:
        phone = f"{person.phone} ext. {person.phoneExt}" if person.phone and person.phoneExt else person.phone
        telecom = [
            {"system": "phone", "value": phone, "use": "work"} if phone else None,
            {"system": "email", "value": person.email, "use": "work"} if person.email else None,
        ]
        contacts.append(_clean({"name": person.name, "telecom": [t for t in telecom if t]}))
    return contacts


def _arms(study: Study) -> list[dict[str, Any]]:
    arms = []
    for arm in study.protocolSection.armsInterventionsModule.armGroups:
        arm_type = None
        if arm.type in ARM_TYPES:
            code, display = ARM_TYPES[arm.type]
            arm_type = _concept((ARM_TYPE_SYSTEM, code, display), display)
        elif arm.type:
            arm_type = {"text": words(arm.type)}
        arms.append(_clean({"name": arm.label, "type": arm_type, "description": arm.description}))
    return arms


def research_study(
    study: Study,
    criteria: CriteriaDefinition,
    organization: dict[str, Any],
    plan: dict[str, Any],
    group: dict[str, Any],
) -> dict[str, Any]:
    proto = study.protocolSection
    design = proto.designModule
    conditions = proto.conditionsModule.conditions
    if not conditions:
        raise StudyDefinitionError(f"{study.nct_id}: conditionsModule.conditions is empty")
    arms = _arms(study)
    if not arms:
        raise StudyDefinitionError(f"{study.nct_id}: armsInterventionsModule.armGroups is empty")
    focus = [{"text": i.name} for i in proto.armsInterventionsModule.interventions] or [
        {"text": c} for c in conditions
    ]
    codings = _condition_codings(study, criteria)
    identifiers = [identifier(NCT_SYSTEM, study.nct_id)]
    if study.org_study_id:
        identifiers.append(identifier(SID_ORG_STUDY_ID, study.org_study_id, "Sponsor protocol id"))
    enrollment = design.enrollmentInfo
    return _clean(
        {
            "resourceType": "ResearchStudy",
            "id": study.nct_id,
            "meta": {"profile": [PROFILE_RESEARCH_STUDY]},
            "extension": [
                {"url": EXT_TARGET_ENROLLMENT, "valueUnsignedInt": enrollment.count} if enrollment else None
            ],
            "text": narrative(
                f"{study.nct_id}: {study.title}",
                f"Status: {words(proto.statusModule.overallStatus)}. Sponsor: {organization['name']}.",
                f"Target enrolment: {enrollment.count} participants." if enrollment else "",
            ),
            "identifier": identifiers,
            "title": study.title,
            "protocol": [reference(plan)],
            "status": study_status(study),
            "primaryPurposeType": _primary_purpose(study),
            "phase": _phase(study),
            # R4 binds no code system to category (example binding, no value set): the v2 study type as text.
            "category": [{"text": words(design.studyType)}],
            "focus": focus,
            "condition": [{"coding": codings, "text": c} for c in conditions],
            "contact": _contact(study),
            "relatedArtifact": [
                {
                    "type": "documentation",
                    "label": "ClinicalTrials.gov",
                    "display": f"{study.nct_id} on ClinicalTrials.gov",
                    "url": study.registry_url,
                }
            ],
            "keyword": [{"text": k} for k in proto.conditionsModule.keywords],
            "description": _description(study),
            "enrollment": [reference(group)],
            "sponsor": reference(organization, organization["name"]),
            "arm": arms,
        }
    )
