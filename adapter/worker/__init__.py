"""The worker: keeps screening a FHIR server and flags candidates back in it."""
