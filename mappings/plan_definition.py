"""The protocol PlanDefinition of a study: one action per arm and dose level, conforming to the HL7
Vulcan Schedule of Activities protocol profile (see resources.py)."""

from __future__ import annotations

from typing import Any

from mappings.criteria import CriteriaDefinition
from mappings.kinds.publish import UCUM
from mappings.kinds.publish import clean as _clean
from mappings.kinds.publish import concept as _concept
from mappings.kinds.publish import number as _number
from mappings.publication import (
    EXT_ACTION_DOSE,
    PLAN_DEFINITION_URL,
    PLAN_TYPE_SYSTEM,
    PROFILE_PROTOCOL,
    narrative,
    resource_identifier,
)
from mappings.study import DURATION_UNITS, Study, StudyDefinitionError

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


def plan_definition(study: Study, criteria: CriteriaDefinition, research_status: str) -> dict[str, Any]:
    nct = study.nct_id
    arms = study.protocolSection.armsInterventionsModule.armGroups
    return _clean(
        {
            "resourceType": "PlanDefinition",
            "id": f"{nct}-protocol",
            # Conforms to Vulcan's StudyProtocolSoa (PROFILE_VULCAN_SOA_PROTOCOL) without claiming it: a
            # validator without that IG package (HAPI here) rejects an unknown meta.profile as an error.
            "meta": {"profile": [PROFILE_PROTOCOL]},
            "text": narrative(
                f"Protocol of {nct}: {study.title}",
                *(f"{a.label}: {a.description}" for a in arms if a.description),
            ),
            "url": PLAN_DEFINITION_URL.format(nct=nct),
            "identifier": [resource_identifier(nct, "protocol")],
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
