"""FHIR plumbing shared by every part of the adapter: the HTTP client and its auth, search values,
reading and checking FHIR JSON (``parsing``), OperationOutcome answers (``outcome``) and transactions
(``transaction``: conditional writes, ``urn:uuid`` full URLs, reference rewriting)."""

FHIR_JSON = "application/fhir+json"  # the FHIR media type (R4 http.html#mime-type)
