"""Screening: evaluate a patient's FHIR record against the study's criteria definition."""
