"""FHIR server access: client, auth, search helpers."""
