"""HL7 version 2 messages: parsing (python-hl7), mapping to FHIR R4 (the HL7 "Version 2 to FHIR"
implementation guide's segment and data-type maps) and acknowledgements (ACK with ERR).

Parser choice: python-hl7 (``hl7`` 0.4.5, BSD) over hl7apy (1.3.5, MIT). hl7apy is the more recently
released and validates messages against the v2 message structures, which real feeds rarely satisfy
to the letter; python-hl7 is small, has no dependencies, parses whatever encoding characters MSH
declares, unescapes faithfully, and ships ``mllp_send``, the independent client our integration
tests use. Its asyncio MLLP module (experimental) is not used: the listener is ours
(adapter/service/mllp.py).
"""
