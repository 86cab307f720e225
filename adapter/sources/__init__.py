"""Where patient data comes from: files (Bundle / Bulk Data NDJSON) or a FHIR server."""
