"""Map a study definition (``study.json`` + ``criteria.yaml``) to FHIR R4 resources.

``build_study_resources`` returns the sponsor Organization, the ResearchStudy, its protocol (PlanDefinition)
and its eligibility criteria (Group) as plain JSON dicts that conform to the adapter's profiles
(``fhir_profiles/``), plus one ValueSet per criteria concept set (``mappings.valuesets``);
``adapter.fhir.transaction.transaction_bundle`` wraps them in an idempotent transaction (conditional
updates on business identifiers, ValueSets on their canonical url, ``urn:uuid`` references between them).

Every study fact comes from the study files; this module only holds terminology (code systems, the codes
used for each kind of criterion, the v2 -> FHIR value maps). Every resource is validated against the
``fhir.resources`` R4B model before it is returned, and the output is deterministic: building twice gives
byte-identical JSON (no timestamps, no random ids, no reordering).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from mappings.criteria import CriteriaDefinition, CriteriaDefinitionError
from mappings.group import characteristics, group_narrative
from mappings.kinds.publish import BASE, UCUM
from mappings.kinds.publish import clean as _clean
from mappings.kinds.publish import coding as _coding
from mappings.kinds.publish import concept as _concept
from mappings.kinds.publish import number as _number
from mappings.study import DURATION_UNITS, Study, StudyDefinitionError
from mappings.valuesets import concept_valuesets

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

# R4 research-study-status -> PlanDefinition.status (publication-status). The PlanDefinition is the
# registered protocol, not a draft of ours: once the study is approved the protocol is fixed and ready to
# use ('active'), including for NOT_YET_RECRUITING. A study that has ended or was withdrawn/disapproved
# retires its protocol; one still in review has only a draft protocol.
PLAN_STATUS = {
    "in-review": "draft",
    "completed": "retired",
    "administratively-completed": "retired",
    "withdrawn": "retired",
    "disapproved": "retired",
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

# --- the result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyResources:
    organization: dict[str, Any]
    research_study: dict[str, Any]
    plan_definition: dict[str, Any]
    group: dict[str, Any]
    # One per criteria concept set (mappings.valuesets): published beside the Group, so the sets the
    # server holds are the ones screening evaluates.
    valuesets: tuple[dict[str, Any], ...] = ()

    def all(self) -> list[dict[str, Any]]:
        """The study resources proper (ValueSets apart: see ``published``)."""
        return [self.organization, self.research_study, self.plan_definition, self.group]

    def published(self) -> list[dict[str, Any]]:
        """Everything ``publish`` sends, in one transaction: the study resources, then the ValueSets."""
        return [*self.all(), *self.valuesets]


# --- small builders -----------------------------------------------------------------------------


def _words(enum_value: str) -> str:
    """v2 enum -> text: INTERVENTIONAL -> Interventional, SUPPORTIVE_CARE -> Supportive care."""
    return enum_value.replace("_", " ").capitalize()


def _identifier(system: str, value: str, type_text: str | None = None) -> dict[str, Any]:
    return _clean({"type": {"text": type_text} if type_text else None, "system": system, "value": value})


def _resource_identifier(nct: str, role: str) -> dict[str, Any]:
    return _identifier(SID_STUDY_RESOURCE, f"{nct}/{role}")


def _reference(resource: dict[str, Any], display: str | None = None) -> dict[str, Any]:
    return _clean({"reference": f"{resource['resourceType']}/{resource['id']}", "display": display})


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Round-trip a resource through its ``fhir.resources`` R4B model; raise if anything is invalid or lost."""
    model_class = get_fhir_model_class(resource["resourceType"])
    model = model_class.model_validate(resource)
    again = json.loads(model.model_dump_json(exclude_none=True))
    if again != resource:
        raise ValueError(f"{resource['resourceType']}/{resource.get('id')}: did not round-trip through R4B")
    return resource


# --- ResearchStudy ------------------------------------------------------------------------------


def _study_status(study: Study) -> str:
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
    return {"text": _words(purpose)}  # OTHER, ECT: no R4 code


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
            arm_type = {"text": _words(arm.type)}
        arms.append(_clean({"name": arm.label, "type": arm_type, "description": arm.description}))
    return arms


def _research_study(
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
    identifiers = [_identifier(NCT_SYSTEM, study.nct_id)]
    if study.org_study_id:
        identifiers.append(_identifier(SID_ORG_STUDY_ID, study.org_study_id, "Sponsor protocol id"))
    enrollment = design.enrollmentInfo
    return _clean(
        {
            "resourceType": "ResearchStudy",
            "id": study.nct_id,
            "meta": {"profile": [PROFILE_RESEARCH_STUDY]},
            "extension": [
                {"url": EXT_TARGET_ENROLLMENT, "valueUnsignedInt": enrollment.count} if enrollment else None
            ],
            "text": _narrative(
                f"{study.nct_id}: {study.title}",
                f"Status: {_words(proto.statusModule.overallStatus)}. Sponsor: {organization['name']}.",
                f"Target enrolment: {enrollment.count} participants." if enrollment else "",
            ),
            "identifier": identifiers,
            "title": study.title,
            "protocol": [_reference(plan)],
            "status": _study_status(study),
            "primaryPurposeType": _primary_purpose(study),
            "phase": _phase(study),
            # R4 binds no code system to category (example binding, no value set): the v2 study type as text.
            "category": [{"text": _words(design.studyType)}],
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
            "enrollment": [_reference(group)],
            "sponsor": _reference(organization, organization["name"]),
            "arm": arms,
        }
    )


# --- PlanDefinition -----------------------------------------------------------------------------


def _dose_quantity(level: Any) -> dict[str, Any]:
    return {"value": _number(level.value), "unit": level.unit, "system": UCUM, "code": level.ucum}


def _actions(study: Study) -> list[dict[str, Any]]:
    notes = study.adapterAnnotations
    arm_text = " ".join(
        a.description for a in study.protocolSection.armsInterventionsModule.armGroups if a.description
    )
    timing = {"repeat": {"count": notes.dosesPerSubject}} if notes.dosesPerSubject else None
    actions: list[dict[str, Any]] = []
    if notes.doseLevels:
        title = (
            f"{notes.doseEscalation.capitalize()} dose escalation" if notes.doseEscalation else "Dose levels"
        )
        actions.append(
            {
                "id": "dose-escalation",
                "title": title,
                "description": arm_text or None,
                # Each subject is assigned one dose level (sequential assignment), hence exactly-one.
                "groupingBehavior": "logical-group",
                "selectionBehavior": "exactly-one",
                "requiredBehavior": "must",
                "action": [
                    {
                        "id": f"dose-level-{n}",
                        "extension": [{"url": EXT_ACTION_DOSE, "valueQuantity": _dose_quantity(level)}],
                        "title": level.label,
                        # The registry gives the number of doses but no interval: count only.
                        "timingTiming": timing,
                    }
                    for n, level in enumerate(notes.doseLevels, start=1)
                ],
            }
        )
    else:
        for n, intervention in enumerate(
            study.protocolSection.armsInterventionsModule.interventions, start=1
        ):
            actions.append(
                {
                    "id": f"intervention-{n}",
                    "title": intervention.name,
                    "description": intervention.description,
                    "requiredBehavior": "must",
                    "timingTiming": timing,
                }
            )
    follow_up = notes.followUp
    if follow_up:
        words = DURATION_UNITS[follow_up.unit]
        value = _number(follow_up.value)
        actions.append(
            {
                "id": "follow-up",
                "title": "Follow-up",
                "description": f"Follow-up to {value} {words} after {follow_up.after}.",
                "relatedAction": [
                    {"actionId": a["id"], "relationship": "after-end"} for a in actions if "id" in a
                ],
                "timingDuration": {"value": value, "unit": words, "system": UCUM, "code": follow_up.unit},
            }
        )
        # The last visit as its own action with a timing offset from the doses (Vulcan SoA: visits are
        # actions placed by relatedAction.offsetDuration).
        actions.append(
            {
                "id": "end-of-follow-up",
                "title": "End of follow-up visit",
                "description": f"Last study visit, {value} {words} after {follow_up.after}.",
                "requiredBehavior": "must",
                "relatedAction": [
                    {
                        "actionId": a["id"],
                        "relationship": "after-end",
                        "offsetDuration": {
                            "value": value,
                            "unit": words,
                            "system": UCUM,
                            "code": follow_up.unit,
                        },
                    }
                    for a in actions
                    if a["id"] != "follow-up"
                ],
            }
        )
    if not actions:
        raise StudyDefinitionError(
            f"{study.nct_id}: no dose levels or interventions to build the protocol from"
        )
    return actions


def _plan_definition(study: Study, criteria: CriteriaDefinition, research_status: str) -> dict[str, Any]:
    nct = study.nct_id
    arms = study.protocolSection.armsInterventionsModule.armGroups
    return _clean(
        {
            "resourceType": "PlanDefinition",
            "id": f"{nct}-protocol",
            # Conforms to Vulcan's StudyProtocolSoa (PROFILE_VULCAN_SOA_PROTOCOL) without claiming it: a
            # validator without that IG package (HAPI here) rejects an unknown meta.profile as an error.
            "meta": {"profile": [PROFILE_PROTOCOL]},
            "text": _narrative(
                f"Protocol of {nct}: {study.title}",
                *(f"{a.label}: {a.description}" for a in arms if a.description),
            ),
            "url": PLAN_DEFINITION_URL.format(nct=nct),
            "identifier": [_resource_identifier(nct, "protocol")],
            # The version of the study definition (criteria.yaml `version`), bumped when the mapping changes.
            "version": str(criteria.version),
            "name": f"{nct}Protocol",
            "title": f"Protocol of {nct}: {study.title}",
            "type": _concept((PLAN_TYPE_SYSTEM, "clinical-protocol", "Clinical Protocol")),
            "status": PLAN_STATUS.get(research_status, "active"),
            # Vulcan SoA must-support subject[x]: the protocol applies to patients (core resource-types).
            "subjectCodeableConcept": {
                "coding": [{"system": "http://hl7.org/fhir/resource-types", "code": "Patient"}]
            },
            "description": "\n\n".join(f"{a.label}: {a.description}" for a in arms if a.description) or None,
            "relatedArtifact": [
                {
                    "type": "documentation",
                    "label": "ClinicalTrials.gov",
                    "display": f"{nct} on ClinicalTrials.gov",
                    "url": study.registry_url,
                }
            ],
            "action": _actions(study),
        }
    )


# --- Group --------------------------------------------------------------------------------------


def _narrative(*paragraphs: str) -> dict[str, Any]:
    """A generated narrative (dom-6) from plain text; only &, <, > are escaped, as servers store them."""
    body = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs if p)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _group(study: Study, criteria: CriteriaDefinition) -> dict[str, Any]:
    nct = study.nct_id
    return _clean(
        {
            "resourceType": "Group",
            "id": f"{nct}-eligibility",
            "meta": {"profile": [PROFILE_ELIGIBILITY_GROUP]},
            "text": group_narrative(study, criteria),
            "identifier": [_resource_identifier(nct, "eligibility")],
            "type": "person",
            "actual": False,
            "name": f"Eligibility criteria of {nct}",
            "characteristic": characteristics(criteria),
        }
    )


# --- Organization -------------------------------------------------------------------------------


def _organization(study: Study) -> dict[str, Any]:
    nct = study.nct_id
    return _clean(
        {
            "resourceType": "Organization",
            "id": f"{nct}-sponsor",
            "identifier": [_resource_identifier(nct, "sponsor")],
            "name": study.protocolSection.sponsorCollaboratorsModule.leadSponsor.name,
        }
    )


# --- entry points -------------------------------------------------------------------------------


def _check_consistent(study: Study, criteria: CriteriaDefinition) -> None:
    if criteria.study != study.nct_id:
        raise StudyDefinitionError(f"criteria.yaml is for {criteria.study} but study.json is {study.nct_id}")
    registry = study.registry_criteria()
    if not registry:
        return  # free-form eligibility text: nothing to compare with
    ids = {c.id for c in criteria.criteria}
    if set(registry) != ids:
        missing = sorted(set(registry) - ids) + sorted(ids - set(registry))
        raise StudyDefinitionError(
            f"{study.nct_id}: criteria.yaml and the registry text number the criteria differently "
            f"({', '.join(missing)})"
        )
    for criterion in criteria.criteria:
        if criterion.text != registry[criterion.id]:
            raise StudyDefinitionError(
                f"{study.nct_id}: {criterion.id} text in criteria.yaml differs from the registry text"
            )


def build_study_resources(study: Study, criteria: CriteriaDefinition) -> StudyResources:
    """The study's Organization, ResearchStudy, PlanDefinition, Group and concept-set ValueSets,
    validated, as JSON dicts.

    References between them are relative (``Group/<NCT>-eligibility``); ``transaction_bundle``
    (``adapter.fhir.transaction``) turns them into the entries' ``urn:uuid`` full URLs.
    """
    _check_consistent(study, criteria)
    status = _study_status(study)
    organization = _organization(study)
    plan = _plan_definition(study, criteria, status)
    group = _group(study, criteria)
    research_study = _research_study(study, criteria, organization, plan, group)
    built = StudyResources(organization, research_study, plan, group, tuple(concept_valuesets(criteria)))
    for resource in built.published():
        validate(resource)
    return built
