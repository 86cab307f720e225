"""The one table of the FHIR resource types the product reads, and how each is read.

Records (``record``), what screening reads (``adapter.screening.reads``), what the ingestion service
accepts (``adapter.service.checks``) and what is searched on a server (``adapter.sources.server``) all
derive from this table, so a new type is added once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadType:
    # The element (and search parameter) that names the patient; None for the Patient and Medication.
    subject: str | None = None
    # Elements whose codes decide whether screening reads a resource of this type.
    coded: tuple[str, ...] = ()
    # Always read, whatever it holds (any vaccination counts; a Medication is read through references).
    always: bool = False
    # A server search fetches the referenced Medication with it.
    include: str | None = None


# In the order a server is searched (Patient first).
READ_TYPES: dict[str, ReadType] = {
    "Patient": ReadType(always=True),
    "Condition": ReadType(subject="subject", coded=("code",)),
    "Observation": ReadType(subject="subject", coded=("code",)),
    "Procedure": ReadType(subject="subject", coded=("code", "category")),
    "MedicationRequest": ReadType(
        subject="subject", coded=("medicationCodeableConcept",), include="MedicationRequest:medication"
    ),
    "MedicationStatement": ReadType(
        subject="subject", coded=("medicationCodeableConcept",), include="MedicationStatement:medication"
    ),
    "Immunization": ReadType(subject="patient", always=True),
    "Medication": ReadType(always=True),
}

# The clinical types grouped by patient, and the element that names the patient, per type.
CLINICAL_TYPES = tuple(name for name, read in READ_TYPES.items() if read.subject)
SUBJECT_ELEMENT = {name: read.subject for name, read in READ_TYPES.items() if read.subject}
ALWAYS_READ = frozenset(name for name, read in READ_TYPES.items() if read.always)
CODED_ELEMENTS = {name: read.coded for name, read in READ_TYPES.items() if read.coded}

# Sent by engines with the data screening reads: accepted by the service, never read.
ACCOMPANYING_TYPES = frozenset(
    {
        "Encounter", "DiagnosticReport", "Specimen", "AllergyIntolerance", "Practitioner",
        "PractitionerRole", "Organization", "Location",
    }
)  # fmt: skip
ACCEPTED_TYPES = frozenset(READ_TYPES) | ACCOMPANYING_TYPES

# Bulky FHIR R4 types of a hospital export that no criterion reads: their NDJSON lines are not parsed.
NEVER_READ = frozenset(
    {
        "AllergyIntolerance", "Appointment", "CarePlan", "CareTeam", "Claim", "Communication",
        "Composition", "Coverage", "Device", "DiagnosticReport", "DocumentReference", "Encounter",
        "EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory", "Goal", "ImagingStudy",
        "Location", "Media", "MedicationAdministration", "MedicationDispense", "Organization",
        "Practitioner", "PractitionerRole", "Provenance", "QuestionnaireResponse", "RelatedPerson",
        "ServiceRequest", "Specimen",
    }
)  # fmt: skip
