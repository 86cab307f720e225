"""Map a study definition (``study.json`` + ``criteria.yaml``) to FHIR R4 resources.

``build_study_resources`` returns the sponsor Organization, the ResearchStudy, its protocol (PlanDefinition)
and its eligibility criteria (Group) as plain JSON dicts that conform to the adapter's profiles
(``fhir_profiles/``), plus one ValueSet per criteria concept set (``mappings.valuesets``);
``adapter.fhir.transaction.transaction_bundle`` wraps them in an idempotent transaction (conditional
updates on business identifiers, ValueSets on their canonical url, ``urn:uuid`` references between them).

Every study fact comes from the study files; the code only holds terminology (code systems, the codes
used for each kind of criterion, the v2 -> FHIR value maps). The ResearchStudy is built in
``mappings.research_study``, the PlanDefinition in ``mappings.plan_definition``, what they share in
``mappings.publication``; this module assembles them with the Group and the Organization. Every resource is validated against the
``fhir.resources`` R4B model before it is returned, and the output is deterministic: building twice gives
byte-identical JSON (no timestamps, no random ids, no reordering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mappings.criteria import CriteriaDefinition
from mappings.group import characteristics, group_narrative
from mappings.kinds.publish import clean as _clean
from mappings.plan_definition import PLAN_STATUS, plan_definition
from mappings.publication import (
    BASE,
    EXT_ACTION_DOSE,
    EXT_TARGET_ENROLLMENT,
    PROFILE_ELIGIBILITY_GROUP,
    PROFILE_VULCAN_SOA_PROTOCOL,
    resource_identifier,
    validate,
)
from mappings.research_study import research_study, study_status
from mappings.study import Study, StudyDefinitionError
from mappings.valuesets import concept_valuesets

# Callers import the shared names from here (they live in publication.py and plan_definition.py).
__all__ = [
    "BASE",
    "EXT_ACTION_DOSE",
    "EXT_TARGET_ENROLLMENT",
    "PLAN_STATUS",
    "PROFILE_VULCAN_SOA_PROTOCOL",
    "StudyResources",
    "build_study_resources",
    "validate",
]

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


# --- Group --------------------------------------------------------------------------------------


def _group(study: Study, criteria: CriteriaDefinition) -> dict[str, Any]:
    nct = study.nct_id
    return _clean(
        {
            "resourceType": "Group",
            "id": f"{nct}-eligibility",
            "meta": {"profile": [PROFILE_ELIGIBILITY_GROUP]},
            "text": group_narrative(study, criteria),
            "identifier": [resource_identifier(nct, "eligibility")],
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
            "identifier": [resource_identifier(nct, "sponsor")],
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
    status = study_status(study)
    organization = _organization(study)
    plan = plan_definition(study, criteria, status)
    group = _group(study, criteria)
    study_resource = research_study(study, criteria, organization, plan, group)
    built = StudyResources(organization, study_resource, plan, group, tuple(concept_valuesets(criteria)))
    for resource in built.published():
        validate(resource)
    return built
