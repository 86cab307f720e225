"""HL7 version 2 messages: parsing (python-hl7), mapping to FHIR R4 (the HL7 "Version 2 to FHIR"
implementation guide's segment and data-type maps) and acknowledgements (ACK with ERR)."""
